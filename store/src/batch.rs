//! A batch of writes applied atomically: one buffer for every key and value
//! (no allocation per operation), bounded per key and value.

use crate::{Column, StoreError, KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// One operation of a batch, as offsets into the batch's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    column: Column,
    key: (u32, u32),
    /// `None` deletes the key.
    value: Option<(u32, u32)>,
}

/// One operation, as [`Batch::ops`] yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Put {
        column: Column,
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        column: Column,
        key: &'a [u8],
    },
}

/// Writes to apply together.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    buf: Vec<u8>,
    slots: Vec<Slot>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    fn push(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        assert!(
            self.buf.len() <= u32::MAX as usize,
            "a batch stays under 4 GiB"
        );
        (start as u32, bytes.len() as u32)
    }

    /// Sets `key` to `value` in `column`.
    pub fn put(&mut self, column: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if key.len() > KEY_BYTES_MAX {
            return Err(StoreError::KeyTooLong(key.len()));
        }
        if value.len() > VALUE_BYTES_MAX {
            return Err(StoreError::ValueTooLong(value.len()));
        }
        let key = self.push(key);
        let value = Some(self.push(value));
        self.slots.push(Slot { column, key, value });
        Ok(())
    }

    /// Removes `key` from `column`.
    pub fn delete(&mut self, column: Column, key: &[u8]) -> Result<(), StoreError> {
        if key.len() > KEY_BYTES_MAX {
            return Err(StoreError::KeyTooLong(key.len()));
        }
        let key = self.push(key);
        self.slots.push(Slot {
            column,
            key,
            value: None,
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.slots.clear();
    }

    /// The operations in the order they were added.
    pub fn ops(&self) -> impl Iterator<Item = Op<'_>> {
        self.ops_from(0)
    }

    /// The operations from the `first`-th on (those added since the batch
    /// had `first`), in order.
    pub fn ops_from(&self, first: usize) -> impl Iterator<Item = Op<'_>> {
        let at = |(start, len): (u32, u32)| &self.buf[start as usize..(start + len) as usize];
        self.slots[first.min(self.slots.len())..]
            .iter()
            .map(move |s| match s.value {
                Some(value) => Op::Put {
                    column: s.column,
                    key: at(s.key),
                    value: at(value),
                },
                None => Op::Delete {
                    column: s.column,
                    key: at(s.key),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_come_back_in_order_and_bounds_are_refused() {
        let mut b = Batch::new();
        b.put(Column::Keys, b"a", b"1").unwrap();
        b.delete(Column::Ledger, b"b").unwrap();
        b.put(Column::Meta, b"c", b"").unwrap();
        let ops: Vec<_> = b.ops().collect();
        assert_eq!(
            ops,
            vec![
                Op::Put {
                    column: Column::Keys,
                    key: b"a",
                    value: b"1"
                },
                Op::Delete {
                    column: Column::Ledger,
                    key: b"b"
                },
                Op::Put {
                    column: Column::Meta,
                    key: b"c",
                    value: b""
                },
            ]
        );
        assert!(matches!(
            b.put(Column::Keys, &[0; KEY_BYTES_MAX + 1], b""),
            Err(StoreError::KeyTooLong(65))
        ));
        assert!(matches!(
            b.put(Column::Keys, b"k", &vec![0; VALUE_BYTES_MAX + 1]),
            Err(StoreError::ValueTooLong(_))
        ));
        assert_eq!(b.len(), 3, "a refused operation adds nothing");
        b.clear();
        assert!(b.is_empty() && b.bytes() == 0);
    }
}
