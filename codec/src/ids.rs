//! Compact numeric identities on the wire, names at the edges.
//!
//! The wire carries `u32` participant ids, `u16` ISO 4217 numeric currency
//! codes and a `u8` window; files, HTTP/JSON and the CLI carry `bank_07`,
//! `EUR` and `T1`. The conversions live here so every edge spells them the
//! same way.

use core::fmt;

use rkyv::{Archive, Deserialize, Serialize};

/// A participant (a bank) by number. Its name at the edges is `bank_NN`.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct ParticipantId(pub u32);

/// Prefix of every participant name.
const PARTICIPANT_PREFIX: &str = "bank_";

/// At most the digits of `u32::MAX`, so parsing cannot overflow silently.
const PARTICIPANT_DIGITS_MAX: usize = 10;

impl ParticipantId {
    /// Parses a canonical name: `bank_` then at least two decimal digits, with
    /// no leading zero beyond the two-digit minimum (`bank_07`, `bank_123`).
    /// Only the canonical spelling is accepted so that one participant has
    /// exactly one name: `from_name(p.name()) == Some(p)` and back.
    pub fn from_name(name: &str) -> Option<ParticipantId> {
        let digits = name.strip_prefix(PARTICIPANT_PREFIX)?;
        if digits.len() < 2 || digits.len() > PARTICIPANT_DIGITS_MAX {
            return None;
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.len() > 2 && digits.starts_with('0') {
            return None;
        }
        digits.parse::<u32>().ok().map(ParticipantId)
    }

    /// The canonical name, `bank_{:02}`.
    pub fn name(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PARTICIPANT_PREFIX}{:02}", self.0)
    }
}

impl From<&ArchivedParticipantId> for ParticipantId {
    fn from(archived: &ArchivedParticipantId) -> Self {
        ParticipantId(archived.0.to_native())
    }
}

/// A currency by its ISO 4217 numeric code (EUR = 978).
///
/// Any `u16` can arrive on the wire; whether the code is one the engine
/// knows is the node's validation (`RejectReason::UnknownCurrency`), so the
/// field is public and unknown codes are representable.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct Currency(pub u16);

/// (numeric code, alphabetic code, minor units) for the currencies the
/// engine knows. Sorted by numeric code.
const CURRENCIES: &[(u16, &str, u8)] = &[
    (36, "AUD", 2),
    (124, "CAD", 2),
    (156, "CNY", 2),
    (208, "DKK", 2),
    (344, "HKD", 2),
    (356, "INR", 2),
    (392, "JPY", 0),
    (410, "KRW", 0),
    (484, "MXN", 2),
    (554, "NZD", 2),
    (578, "NOK", 2),
    (702, "SGD", 2),
    (710, "ZAR", 2),
    (752, "SEK", 2),
    (756, "CHF", 2),
    (826, "GBP", 2),
    (840, "USD", 2),
    (978, "EUR", 2),
    (985, "PLN", 2),
    (986, "BRL", 2),
];

impl Currency {
    pub const AUD: Currency = Currency(36);
    pub const CAD: Currency = Currency(124);
    pub const CNY: Currency = Currency(156);
    pub const JPY: Currency = Currency(392);
    pub const CHF: Currency = Currency(756);
    pub const GBP: Currency = Currency(826);
    pub const USD: Currency = Currency(840);
    pub const EUR: Currency = Currency(978);

    /// Every currency the engine knows, by numeric code.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|&(code, _, _)| Currency(code))
    }

    /// Parses an upper-case ISO 4217 alphabetic code (`"EUR"`).
    pub fn from_code(code: &str) -> Option<Currency> {
        CURRENCIES
            .iter()
            .find(|&&(_, alpha, _)| alpha == code)
            .map(|&(numeric, _, _)| Currency(numeric))
    }

    fn entry(self) -> Option<&'static (u16, &'static str, u8)> {
        CURRENCIES
            .iter()
            .find(|&&(numeric, _, _)| numeric == self.0)
    }

    /// Whether this numeric code is one the engine knows.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// The alphabetic code; `"XXX"` (ISO's "no currency") for an unknown code.
    pub fn as_str(self) -> &'static str {
        self.entry().map_or("XXX", |&(_, alpha, _)| alpha)
    }

    /// Digits after the decimal point (2 for EUR, 0 for JPY); `None` for an
    /// unknown code, so no caller formats an amount with a guessed scale.
    pub fn minor_units(self) -> Option<u8> {
        self.entry().map(|&(_, _, minor)| minor)
    }
}

/// Known currencies print their alphabetic code; unknown ones their
/// three-digit numeric code, so a log line never hides which code arrived.
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry() {
            Some(&(_, alpha, _)) => f.write_str(alpha),
            None => write!(f, "{:03}", self.0),
        }
    }
}

impl From<&ArchivedCurrency> for Currency {
    fn from(archived: &ArchivedCurrency) -> Self {
        Currency(archived.0.to_native())
    }
}

/// The settlement window a transaction asks for.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash, Clone, Copy))]
#[repr(u8)]
pub enum Window {
    /// Real-time gross settlement: settle on its own, as soon as possible.
    Rtgs = 0,
    /// Same day.
    T0 = 1,
    /// Next business day.
    T1 = 2,
    /// Two business days.
    T2 = 3,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Rtgs, Window::T0, Window::T1, Window::T2];

    /// `"RTGS"`, `"T0"`, `"T1"`, `"T2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Rtgs => "RTGS",
            Window::T0 => "T0",
            Window::T1 => "T1",
            Window::T2 => "T2",
        }
    }

    /// Parses the names `as_str` gives, exactly.
    pub fn from_name(name: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == name)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&ArchivedWindow> for Window {
    fn from(archived: &ArchivedWindow) -> Self {
        match archived {
            ArchivedWindow::Rtgs => Window::Rtgs,
            ArchivedWindow::T0 => Window::T0,
            ArchivedWindow::T1 => Window::T1,
            ArchivedWindow::T2 => Window::T2,
        }
    }
}

/// Serde (JSON) form of a type that is a name at the edges: serialised with
/// `Display`, parsed with the given function, without allocating.
macro_rules! serde_as_name {
    ($ty:ty, $parse:path, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        $parse(v)
                            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
}

serde_as_name!(
    ParticipantId,
    ParticipantId::from_name,
    "a participant name like bank_07"
);
serde_as_name!(
    Currency,
    Currency::from_code,
    "a known ISO 4217 currency code like EUR"
);
serde_as_name!(Window, Window::from_name, "one of RTGS, T0, T1, T2");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_names_are_canonical() {
        assert_eq!(ParticipantId::from_name("bank_07"), Some(ParticipantId(7)));
        assert_eq!(ParticipantId::from_name("bank_00"), Some(ParticipantId(0)));
        assert_eq!(
            ParticipantId::from_name("bank_123"),
            Some(ParticipantId(123))
        );
        assert_eq!(ParticipantId(7).name(), "bank_07");
        assert_eq!(ParticipantId(123).name(), "bank_123");
        assert_eq!(ParticipantId(u32::MAX).name(), "bank_4294967295");
        assert_eq!(
            ParticipantId::from_name("bank_4294967295"),
            Some(ParticipantId(u32::MAX))
        );
        for bad in [
            "bank_7",
            "bank_007",
            "bank_",
            "Bank_07",
            "bank_0x",
            "bank_+7",
            "bank_4294967296",
            "bank_99999999999",
            "07",
            "",
        ] {
            assert_eq!(ParticipantId::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn currencies_use_iso_numeric_codes() {
        assert_eq!(Currency::from_code("EUR"), Some(Currency(978)));
        assert_eq!(Currency::from_code("USD"), Some(Currency(840)));
        assert_eq!(Currency::from_code("AUD"), Some(Currency(36)));
        assert_eq!(Currency::from_code("eur"), None);
        assert_eq!(Currency::from_code("XXX"), None);
        assert_eq!(Currency::JPY.minor_units(), Some(0));
        assert_eq!(Currency::EUR.minor_units(), Some(2));
        assert_eq!(Currency(999).minor_units(), None);
        assert_eq!(Currency(999).as_str(), "XXX");
        assert_eq!(Currency(999).to_string(), "999");
        assert_eq!(Currency(36).to_string(), "AUD");
        for c in Currency::all() {
            assert_eq!(Currency::from_code(c.as_str()), Some(c));
        }
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn windows_round_trip_by_name() {
        for w in Window::ALL {
            assert_eq!(Window::from_name(w.as_str()), Some(w));
        }
        assert_eq!(Window::from_name("rtgs"), None);
        assert_eq!(Window::from_name("T3"), None);
    }

    #[test]
    fn json_uses_names() {
        let json = serde_json::to_string(&(ParticipantId(7), Currency::EUR, Window::Rtgs)).unwrap();
        assert_eq!(json, r#"["bank_07","EUR","RTGS"]"#);
        let back: (ParticipantId, Currency, Window) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (ParticipantId(7), Currency::EUR, Window::Rtgs));
        assert!(serde_json::from_str::<Currency>(r#""ABC""#).is_err());
        assert!(serde_json::from_str::<ParticipantId>(r#""bank_7""#).is_err());
    }
}
