//! Exact decimals: the `usd_per_unit` rates and limits as the JSON text spells
//! them, and the exact conversion of amounts between currencies.
//!
//! Binary floating point changes about one cross-currency `receive_amount` in
//! a thousand by one minor unit (the spec says so), so conversions are done on
//! integers: the common case in `u128`, the rare wide case in a fixed 384-bit
//! integer.

use std::fmt;
use std::str::FromStr;

/// Largest power of ten a conversion may need; beyond it the inputs are
/// nonsense (a rate with 60 decimals) and the conversion reports an error.
const POW10_EXPONENT_MAX: i32 = 60;

/// A non-negative decimal number `mantissa * 10^exponent`, normalised so that
/// the mantissa has no trailing zeros (zero is `0 * 10^0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal {
    mantissa: u64,
    exponent: i32,
}

/// Why a decimal text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number")]
    Syntax,
    #[error("negative")]
    Negative,
    #[error("more than 19 significant digits")]
    TooManyDigits,
    #[error("exponent out of range")]
    Exponent,
}

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        exponent: 0,
    };

    /// `mantissa * 10^exponent`.
    pub fn new(mantissa: u64, exponent: i32) -> Decimal {
        let mut d = Decimal { mantissa, exponent };
        d.normalise();
        d
    }

    pub fn mantissa(&self) -> u64 {
        self.mantissa
    }

    pub fn exponent(&self) -> i32 {
        self.exponent
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// Nearest `f64`: for costs, which the spec compares to within 0.02 USD.
    pub fn to_f64(&self) -> f64 {
        // Parsing the canonical text is correctly rounded, unlike m * 10^e.
        self.to_string().parse::<f64>().unwrap_or(f64::NAN)
    }

    /// `floor(self * 10^scale)` as an integer, `None` when it does not fit.
    pub fn to_fixed_floor(&self, scale: i32) -> Option<i128> {
        let e = self.exponent.checked_add(scale)?;
        let m = self.mantissa as i128;
        if e >= 0 {
            m.checked_mul(pow10_i128(e)?)
        } else if -e > 38 {
            Some(0)
        } else {
            Some(m / pow10_i128(-e)?)
        }
    }

    fn normalise(&mut self) {
        if self.mantissa == 0 {
            self.exponent = 0;
            return;
        }
        while self.mantissa.is_multiple_of(10) {
            self.mantissa /= 10;
            self.exponent += 1;
        }
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    /// JSON number syntax: `-`? digits (`.` digits)? ([eE] [+-]? digits)?
    fn from_str(text: &str) -> Result<Decimal, DecimalError> {
        let s = text.trim();
        if let Some(positive) = s.strip_prefix('-') {
            // "-0" is zero; any other negative is refused.
            let rest: Decimal = positive.parse()?;
            return if rest.is_zero() {
                Ok(Decimal::ZERO)
            } else {
                Err(DecimalError::Negative)
            };
        }
        let (num, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (int, frac) = match num.find('.') {
            Some(i) => (&num[..i], &num[i + 1..]),
            None => (num, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecimalError::Syntax);
        }
        if num.contains('.') && frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecimalError::Syntax);
        }
        let mut exponent: i64 = match exp {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(DecimalError::Syntax);
                }
                if digits.len() > 6 {
                    return Err(DecimalError::Exponent);
                }
                e.parse::<i64>().map_err(|_| DecimalError::Syntax)?
            }
        };
        let mut mantissa: u64 = 0;
        let mut significant = false;
        for b in int.bytes().chain(frac.bytes()) {
            let digit = u64::from(b - b'0');
            significant |= digit != 0;
            if !significant {
                continue;
            }
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(digit))
                .ok_or(DecimalError::TooManyDigits)?;
        }
        exponent -= frac.len() as i64;
        if mantissa == 0 {
            return Ok(Decimal::ZERO);
        }
        let exponent = i32::try_from(exponent).map_err(|_| DecimalError::Exponent)?;
        if exponent.abs() > 400 {
            return Err(DecimalError::Exponent);
        }
        Ok(Decimal::new(mantissa, exponent))
    }
}

impl fmt::Display for Decimal {
    /// Plain decimal notation (`1.08`, `0.0067`, `20000000`): valid JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        if self.exponent >= 0 {
            write!(f, "{digits}")?;
            for _ in 0..self.exponent {
                write!(f, "0")?;
            }
            Ok(())
        } else {
            let point = digits.len() as i64 + i64::from(self.exponent);
            if point > 0 {
                let (a, b) = digits.split_at(point as usize);
                write!(f, "{a}.{b}")
            } else {
                write!(f, "0.")?;
                for _ in 0..(-point) {
                    write!(f, "0")?;
                }
                write!(f, "{digits}")
            }
        }
    }
}

fn pow10_i128(e: i32) -> Option<i128> {
    if !(0..=38).contains(&e) {
        return None;
    }
    10i128.checked_pow(e as u32)
}

/// Why a conversion could not be computed exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("receiving currency has a zero rate")]
    ZeroRate,
    #[error("the converted amount does not fit in 64 bits")]
    Overflow,
}

/// `amount / 10^mu_send * rate_send / rate_receive * 10^mu_receive`, rounded
/// half to even, exactly.
pub fn convert_amount(
    amount: u64,
    minor_units_send: u32,
    rate_send: Decimal,
    minor_units_receive: u32,
    rate_receive: Decimal,
) -> Result<u64, ConvertError> {
    if rate_receive.is_zero() {
        return Err(ConvertError::ZeroRate);
    }
    // amount * ms * 10^(es - mus) / (mr * 10^(er - mur))
    //   = amount * ms * 10^k / mr  with k = es - er + mur - mus.
    let k = i64::from(rate_send.exponent) - i64::from(rate_receive.exponent)
        + i64::from(minor_units_receive)
        - i64::from(minor_units_send);
    if k.abs() > i64::from(POW10_EXPONENT_MAX) {
        return Err(ConvertError::Overflow);
    }
    let k = k as i32;
    let base = u128::from(amount) * u128::from(rate_send.mantissa);
    let mr = u128::from(rate_receive.mantissa);
    // Fast path: everything fits in u128.
    let fast = if k >= 0 {
        pow10_u128(k)
            .and_then(|p| base.checked_mul(p))
            .map(|n| (n, mr))
    } else {
        pow10_u128(-k)
            .and_then(|p| mr.checked_mul(p))
            .map(|d| (base, d))
    };
    let (q, r, d) = match fast {
        Some((n, d)) => (
            U384::from_u128(n / d),
            U384::from_u128(n % d),
            U384::from_u128(d),
        ),
        None => {
            let mut n = U384::from_u128(base);
            let mut d = U384::from_u128(mr);
            for _ in 0..k.unsigned_abs() {
                let target = if k >= 0 { &mut n } else { &mut d };
                *target = target.mul_small(10).ok_or(ConvertError::Overflow)?;
            }
            let (q, r) = n.div_rem(&d);
            (q, r, d)
        }
    };
    // Round half to even: compare r with d - r.
    let rest = d.sub(&r);
    let up = match r.cmp(&rest) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => q.0[0] & 1 == 1,
    };
    let q = q.to_u64().ok_or(ConvertError::Overflow)?;
    if up {
        q.checked_add(1).ok_or(ConvertError::Overflow)
    } else {
        Ok(q)
    }
}

fn pow10_u128(e: i32) -> Option<u128> {
    if !(0..=38).contains(&e) {
        return None;
    }
    10u128.checked_pow(e as u32)
}

/// A 384-bit unsigned integer, little-endian limbs: just enough arithmetic for
/// the wide conversion path (multiply by a small number, divide, compare).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct U384([u64; 6]);

impl U384 {
    fn from_u128(v: u128) -> U384 {
        U384([v as u64, (v >> 64) as u64, 0, 0, 0, 0])
    }

    fn to_u64(self) -> Option<u64> {
        if self.0[1..].iter().all(|&l| l == 0) {
            Some(self.0[0])
        } else {
            None
        }
    }

    fn mul_small(&self, m: u64) -> Option<U384> {
        let mut out = [0u64; 6];
        let mut carry: u128 = 0;
        for (o, &l) in out.iter_mut().zip(self.0.iter()) {
            let p = u128::from(l) * u128::from(m) + carry;
            *o = p as u64;
            carry = p >> 64;
        }
        if carry != 0 {
            None
        } else {
            Some(U384(out))
        }
    }

    fn bit(&self, i: usize) -> bool {
        (self.0[i / 64] >> (i % 64)) & 1 == 1
    }

    fn shl1_or(&self, low: bool) -> U384 {
        let mut out = [0u64; 6];
        let mut carry = u64::from(low);
        for (o, &l) in out.iter_mut().zip(self.0.iter()) {
            *o = (l << 1) | carry;
            carry = l >> 63;
        }
        U384(out)
    }

    fn sub(&self, other: &U384) -> U384 {
        debug_assert!(*self >= *other);
        let mut out = [0u64; 6];
        let mut borrow = false;
        for (o, (&a, &b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            let (d1, b1) = a.overflowing_sub(b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *o = d2;
            borrow = b1 || b2;
        }
        U384(out)
    }

    /// Schoolbook binary long division; only on the rare wide path.
    fn div_rem(&self, d: &U384) -> (U384, U384) {
        assert!(*d != U384([0; 6]), "division by zero");
        let mut q = U384([0; 6]);
        let mut r = U384([0; 6]);
        for i in (0..384).rev() {
            r = r.shl1_or(self.bit(i));
            if r >= *d {
                r = r.sub(d);
                q.0[i / 64] |= 1 << (i % 64);
            }
        }
        (q, r)
    }
}

impl PartialOrd for U384 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for U384 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_json_number_forms() {
        assert_eq!(d("1.08"), Decimal::new(108, -2));
        assert_eq!(d("1.0"), Decimal::new(1, 0));
        assert_eq!(d("2.0e7"), Decimal::new(2, 7));
        assert_eq!(d("6.7E-3"), Decimal::new(67, -4));
        assert_eq!(d("0.0067"), Decimal::new(67, -4));
        assert_eq!(d("0"), Decimal::ZERO);
        assert_eq!(d("-0.0"), Decimal::ZERO);
        assert_eq!("-1".parse::<Decimal>(), Err(DecimalError::Negative));
        assert_eq!("1.".parse::<Decimal>(), Err(DecimalError::Syntax));
        assert_eq!("abc".parse::<Decimal>(), Err(DecimalError::Syntax));
        assert_eq!("".parse::<Decimal>(), Err(DecimalError::Syntax));
        assert_eq!(d("0.0067").to_string(), "0.0067");
        assert_eq!(d("2e7").to_string(), "20000000");
        assert_eq!(d("1.08").to_string(), "1.08");
    }

    #[test]
    fn fixed_point_floors() {
        assert_eq!(d("1.08").to_fixed_floor(4), Some(10800));
        assert_eq!(d("0.00675").to_fixed_floor(4), Some(67));
        assert_eq!(d("2e7").to_fixed_floor(2), Some(2_000_000_000));
    }

    #[test]
    fn converts_with_half_even_rounding() {
        let usd = d("1.0");
        let eur = d("1.08");
        // 1,250,000 cents USD = 12,500 USD = 11,574.074... EUR.
        assert_eq!(convert_amount(1_250_000, 2, usd, 2, eur), Ok(1_157_407));
        // Same rate: identity.
        assert_eq!(convert_amount(12345, 2, eur, 2, eur), Ok(12345));
        // Ties: 5 units at rate 0.5 into a rate 1 currency = 2.5 -> 2; 7 -> 3.5 -> 4.
        let half = d("0.5");
        let one = d("1");
        assert_eq!(convert_amount(5, 0, half, 0, one), Ok(2));
        assert_eq!(convert_amount(7, 0, half, 0, one), Ok(4));
        assert_eq!(convert_amount(3, 0, half, 0, one), Ok(2));
        // JPY (0 minor units) to USD cents.
        assert_eq!(convert_amount(1000, 0, d("0.0067"), 2, usd), Ok(670));
        assert_eq!(
            convert_amount(1, 2, usd, 2, Decimal::ZERO),
            Err(ConvertError::ZeroRate)
        );
    }

    #[test]
    fn wide_path_agrees_with_fast_path() {
        // A rate with many digits forces the 384-bit path for big amounts.
        let a = d("1.2345678901234567");
        let b = d("0.0000000012345678901");
        let small = convert_amount(10, 2, b, 2, a).unwrap();
        assert_eq!(small, 0);
        let big = convert_amount(u64::MAX / 4, 2, b, 8, a).unwrap();
        // Compare against f64 to within relative 1e-12.
        let expect = (u64::MAX / 4) as f64 * 0.0000000012345678901 / 1.2345678901234567 * 1e6;
        assert!(
            (big as f64 - expect).abs() / expect < 1e-12,
            "{big} vs {expect}"
        );
        assert!(convert_amount(u64::MAX, 0, d("1e30"), 0, d("1")).is_err());
    }
}
