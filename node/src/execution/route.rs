//! Routes: which rails, in order, carry a currency.

use std::fmt;

/// Alternates a route may list after its primary. Each is tried within one
/// attempt, so the bound also bounds the work of an attempt.
pub const ROUTE_ALTERNATES_MAX: usize = 3;

/// A rail registered with an engine (its index there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RailId(pub(crate) u8);

impl RailId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for RailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rail#{}", self.0)
    }
}

/// A primary rail and the alternates tried, in order, when a rail is
/// unavailable, cannot reach the counterparty, or has its breaker open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Primary first; never empty (checked where routes are installed).
    rails: Vec<RailId>,
}

impl Route {
    pub fn new(primary: RailId) -> Self {
        Route {
            rails: vec![primary],
        }
    }

    /// Adds an alternate after the ones already listed.
    pub fn with_alternate(mut self, alternate: RailId) -> Self {
        self.rails.push(alternate);
        self
    }

    pub fn primary(&self) -> RailId {
        self.rails[0]
    }

    pub fn alternates(&self) -> &[RailId] {
        &self.rails[1..]
    }

    /// Every rail, primary first.
    pub fn rails(&self) -> &[RailId] {
        &self.rails
    }
}
