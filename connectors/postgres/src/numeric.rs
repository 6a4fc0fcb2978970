//! PostgreSQL's binary `numeric` format, to and from exact decimals and decimal text.
//!
//! On the wire a numeric is `ndigits: i16, weight: i16, sign: u16, dscale: u16` and then
//! `ndigits` base-10000 digits, most significant first; the first digit is worth
//! 10000^weight. Conversions here are exact: a value that does not fit is an error, never a
//! rounded number.

use arrow::datatypes::i256;
use bytes::{BufMut, BytesMut};

const SIGN_POSITIVE: u16 = 0x0000;
const SIGN_NEGATIVE: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PLUS_INFINITY: u16 = 0xD000;
const SIGN_MINUS_INFINITY: u16 = 0xF000;
const NBASE: u32 = 10_000;

/// A numeric as it came off the wire: borrowed digits and header.
#[derive(Debug)]
pub(crate) struct WireNumeric<'a> {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &'a [u8],
}

impl<'a> WireNumeric<'a> {
    /// Reads the header and checks the digit count against the length.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<WireNumeric<'a>, String> {
        if bytes.len() < 8 {
            return Err(format!(
                "numeric value of {} bytes is shorter than its header",
                bytes.len()
            ));
        }
        let ndigits = i16::from_be_bytes([bytes[0], bytes[1]]);
        let weight = i16::from_be_bytes([bytes[2], bytes[3]]);
        let sign = u16::from_be_bytes([bytes[4], bytes[5]]);
        let dscale = u16::from_be_bytes([bytes[6], bytes[7]]);
        let digits = &bytes[8..];
        if ndigits < 0 || digits.len() != ndigits as usize * 2 {
            return Err(format!(
                "numeric value declares {ndigits} digits but carries {} bytes",
                digits.len()
            ));
        }
        Ok(WireNumeric {
            weight,
            sign,
            dscale,
            digits,
        })
    }

    fn digit(&self, index: usize) -> Result<u32, String> {
        let value = u16::from_be_bytes([self.digits[2 * index], self.digits[2 * index + 1]]) as u32;
        if value >= NBASE {
            return Err(format!("numeric digit {value} is not below 10000"));
        }
        Ok(value)
    }

    fn special(&self) -> Option<&'static str> {
        match self.sign {
            SIGN_NAN => Some("NaN"),
            SIGN_PLUS_INFINITY => Some("Infinity"),
            SIGN_MINUS_INFINITY => Some("-Infinity"),
            _ => None,
        }
    }

    fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }

    /// The value as an integer scaled by 10^`scale`, exactly.
    pub(crate) fn to_scaled<T: Scaled>(&self, scale: i8) -> Result<T, String> {
        if let Some(special) = self.special() {
            return Err(format!("{special} cannot be stored in a decimal column"));
        }
        if self.sign != SIGN_POSITIVE && self.sign != SIGN_NEGATIVE {
            return Err(format!("numeric sign 0x{:04x} is not valid", self.sign));
        }
        let mut value = T::ZERO;
        for index in 0..self.ndigits() {
            let digit = self.digit(index)?;
            if digit == 0 {
                continue;
            }
            // This digit is worth digit × 10^(4 × (weight − index)); scaled: + scale.
            let exponent = 4 * (self.weight as i32 - index as i32) + scale as i32;
            let term = if exponent >= 0 {
                T::pow10(exponent as u32).and_then(|p| p.checked_mul(T::from_u32(digit)))
            } else if exponent > -4 {
                let divisor = 10u32.pow((-exponent) as u32);
                if digit % divisor != 0 {
                    return Err(format!(
                        "has more fractional digits than the column's scale {scale}"
                    ));
                }
                Some(T::from_u32(digit / divisor))
            } else {
                return Err(format!(
                    "has more fractional digits than the column's scale {scale}"
                ));
            };
            value = term
                .and_then(|t| value.checked_add(t))
                .ok_or_else(|| "is too large for the decimal column".to_string())?;
        }
        Ok(if self.sign == SIGN_NEGATIVE {
            value.neg()
        } else {
            value
        })
    }

    /// The value as PostgreSQL prints it (`-12.3400`, `NaN`, `Infinity`).
    pub(crate) fn to_text(&self) -> Result<String, String> {
        if let Some(special) = self.special() {
            return Ok(special.to_string());
        }
        let mut text = String::with_capacity(self.ndigits() * 4 + self.dscale as usize + 3);
        if self.sign == SIGN_NEGATIVE {
            text.push('-');
        }
        let digit_at = |position: i32| -> Result<u32, String> {
            let index = self.weight as i32 - position;
            if index >= 0 && (index as usize) < self.ndigits() {
                self.digit(index as usize)
            } else {
                Ok(0)
            }
        };
        if self.weight < 0 {
            text.push('0');
        } else {
            for position in (0..=self.weight as i32).rev() {
                let digit = digit_at(position)?;
                if position == self.weight as i32 {
                    text.push_str(&digit.to_string());
                } else {
                    text.push_str(&format!("{digit:04}"));
                }
            }
        }
        if self.dscale > 0 {
            text.push('.');
            let mut fraction = String::with_capacity(self.dscale as usize + 4);
            let mut position = -1;
            while fraction.len() < self.dscale as usize {
                fraction.push_str(&format!("{:04}", digit_at(position)?));
                position -= 1;
            }
            fraction.truncate(self.dscale as usize);
            text.push_str(&fraction);
        }
        Ok(text)
    }
}

/// An integer type holding a decimal scaled by a power of ten (i128 for Decimal128, i256 for
/// Decimal256).
pub(crate) trait Scaled: Copy + PartialEq {
    const ZERO: Self;
    fn from_u32(value: u32) -> Self;
    fn pow10(exponent: u32) -> Option<Self>;
    fn checked_add(self, other: Self) -> Option<Self>;
    fn checked_mul(self, other: Self) -> Option<Self>;
    fn neg(self) -> Self;
    fn is_negative(self) -> bool;
    /// Splits the magnitude into (quotient, remainder) by 10^`exponent`, `exponent` < 10 so
    /// the remainder fits a u32; `None` when the magnitude cannot be represented.
    fn div_rem_pow10(self, exponent: u32) -> Option<(Self, u32)>;
    /// Whether the value is a multiple of 10^`exponent` (`None`: exponent out of range).
    fn is_multiple_of_pow10(self, exponent: u32) -> Option<bool>;
    /// The magnitude's base-10000 digits, least significant first.
    fn base10000_digits(self, out: &mut Vec<i16>);
}

impl Scaled for i128 {
    const ZERO: Self = 0;
    fn from_u32(value: u32) -> Self {
        value as i128
    }
    fn pow10(exponent: u32) -> Option<Self> {
        10i128.checked_pow(exponent)
    }
    fn checked_add(self, other: Self) -> Option<Self> {
        i128::checked_add(self, other)
    }
    fn checked_mul(self, other: Self) -> Option<Self> {
        i128::checked_mul(self, other)
    }
    fn neg(self) -> Self {
        -self
    }
    fn is_negative(self) -> bool {
        self < 0
    }
    fn div_rem_pow10(self, exponent: u32) -> Option<(Self, u32)> {
        let divisor = 10u128.checked_pow(exponent)?;
        let magnitude = self.unsigned_abs();
        Some((
            i128::try_from(magnitude / divisor).ok()?,
            u32::try_from(magnitude % divisor).ok()?,
        ))
    }
    fn is_multiple_of_pow10(self, exponent: u32) -> Option<bool> {
        Some(
            self.unsigned_abs()
                .is_multiple_of(10u128.checked_pow(exponent)?),
        )
    }
    fn base10000_digits(self, out: &mut Vec<i16>) {
        let mut magnitude = self.unsigned_abs();
        while magnitude > 0 {
            out.push((magnitude % NBASE as u128) as i16);
            magnitude /= NBASE as u128;
        }
    }
}

impl Scaled for i256 {
    const ZERO: Self = i256::ZERO;
    fn from_u32(value: u32) -> Self {
        i256::from_i128(value as i128)
    }
    fn pow10(exponent: u32) -> Option<Self> {
        let mut result = i256::ONE;
        let ten = i256::from_i128(10);
        for _ in 0..exponent {
            result = result.checked_mul(ten)?;
        }
        Some(result)
    }
    fn checked_add(self, other: Self) -> Option<Self> {
        i256::checked_add(self, other)
    }
    fn checked_mul(self, other: Self) -> Option<Self> {
        i256::checked_mul(self, other)
    }
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
    fn is_negative(self) -> bool {
        i256::is_negative(self)
    }
    fn div_rem_pow10(self, exponent: u32) -> Option<(Self, u32)> {
        let divisor = <i256 as Scaled>::pow10(exponent)?;
        // i256::MIN has no magnitude; it is beyond any decimal's precision anyway.
        let magnitude = self.checked_abs()?;
        let remainder = u32::try_from(magnitude.checked_rem(divisor)?.to_i128()?).ok()?;
        Some((magnitude.checked_div(divisor)?, remainder))
    }
    fn is_multiple_of_pow10(self, exponent: u32) -> Option<bool> {
        let divisor = <i256 as Scaled>::pow10(exponent)?;
        Some(self.checked_rem(divisor)? == i256::ZERO)
    }
    fn base10000_digits(self, out: &mut Vec<i16>) {
        let mut magnitude = self.wrapping_abs();
        let base = i256::from_i128(NBASE as i128);
        while magnitude != i256::ZERO {
            let digit = magnitude
                .checked_rem(base)
                .and_then(|d| d.to_i128())
                .unwrap_or(0);
            out.push(digit as i16);
            magnitude = magnitude.checked_div(base).unwrap_or(i256::ZERO);
        }
    }
}

/// Appends the wire form of `value` × 10^−`scale` (a Decimal128/256 value). With
/// `target_scale`, a value with more fractional digits than the column keeps is an error
/// (PostgreSQL would round it silently). `scratch` is reused between calls.
pub(crate) fn write_scaled<T: Scaled>(
    value: T,
    scale: i8,
    target_scale: Option<i8>,
    scratch: &mut Vec<i16>,
    out: &mut BytesMut,
) -> Result<(), String> {
    if let Some(target) = target_scale.filter(|target| *target < scale) {
        let excess = (scale as i32 - target as i32) as u32;
        if value.is_multiple_of_pow10(excess) != Some(true) {
            return Err(too_precise(target));
        }
    }
    if scale < 0 {
        let factor = T::pow10(scale.unsigned_abs() as u32).ok_or("scale out of range")?;
        let widened = value
            .checked_mul(factor)
            .ok_or("value out of range for numeric")?;
        return write_scaled(widened, 0, None, scratch, out);
    }
    let scale = scale as u32;
    // Split off a partial group so the rest is scaled by a multiple of 4 decimal digits:
    // its low base-10000 digits are then exactly the fraction groups.
    let partial = scale % 4;
    let (rest, last) = value.div_rem_pow10(partial).ok_or("scale out of range")?;
    scratch.clear();
    rest.base10000_digits(scratch);
    let fraction_groups = ((scale - partial) / 4) as usize;
    while scratch.len() < fraction_groups {
        scratch.push(0);
    }
    let integer_groups = scratch.len() - fraction_groups;
    scratch.reverse();
    if partial != 0 {
        scratch.push((last * 10u32.pow(4 - partial)) as i16);
    }
    finish(
        scratch,
        integer_groups as i32 - 1,
        value.is_negative(),
        scale as u16,
        out,
    )
}

/// Strips zero groups at both ends and writes the header and digits.
fn finish(
    digits: &mut Vec<i16>,
    mut weight: i32,
    negative: bool,
    dscale: u16,
    out: &mut BytesMut,
) -> Result<(), String> {
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i32;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let weight =
        i16::try_from(weight).map_err(|_| "the number is too large for numeric".to_string())?;
    let ndigits = i16::try_from(digits.len())
        .map_err(|_| "the number has too many digits for numeric".to_string())?;
    let sign = if negative && !digits.is_empty() {
        SIGN_NEGATIVE
    } else {
        SIGN_POSITIVE
    };
    out.put_i32(8 + 2 * digits.len() as i32);
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for digit in digits.iter() {
        out.put_i16(*digit);
    }
    Ok(())
}

fn too_precise(target: i8) -> String {
    format!("a value has more fractional digits than the column's scale {target} (PostgreSQL would round it); round it in the rule or widen the column")
}

/// Appends the wire form of a numeric written as decimal text (`-12.340`, `NaN`). With
/// `target_scale`, more significant fractional digits than the column keeps is an error.
pub(crate) fn write_text(
    text: &str,
    target_scale: Option<i8>,
    scratch: &mut Vec<i16>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let special = match text {
        "NaN" => Some(SIGN_NAN),
        "Infinity" => Some(SIGN_PLUS_INFINITY),
        "-Infinity" => Some(SIGN_MINUS_INFINITY),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i32(8);
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_u16(0);
        return Ok(());
    }
    let invalid = || format!("'{text}' is not a decimal number");
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (integer.is_empty() && fraction.is_empty())
        || !integer.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    if let Some(target) = target_scale {
        if fraction.trim_end_matches('0').len() > target.max(0) as usize {
            return Err(too_precise(target));
        }
    }
    if let Some(target) = target_scale {
        if fraction.trim_end_matches('0').len() > target.max(0) as usize {
            return Err(too_precise(target));
        }
    }
    let integer = integer.trim_start_matches('0');
    scratch.clear();
    // Integer groups, aligned on the decimal point: the first group may be short.
    let head = integer.len() % 4;
    if head != 0 {
        scratch.push(integer[..head].parse::<i16>().map_err(|_| invalid())?);
    }
    for chunk in integer.as_bytes()[head..].chunks(4) {
        scratch.push(group(chunk));
    }
    let integer_groups = scratch.len() as i32;
    for chunk in fraction.as_bytes().chunks(4) {
        let mut padded = [b'0'; 4];
        padded[..chunk.len()].copy_from_slice(chunk);
        scratch.push(group(&padded));
    }
    if fraction.len() > u16::MAX as usize {
        return Err(invalid());
    }
    finish(
        scratch,
        integer_groups - 1,
        negative,
        fraction.len() as u16,
        out,
    )
}

fn group(ascii_digits: &[u8]) -> i16 {
    ascii_digits
        .iter()
        .fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_of_text(text: &str) -> BytesMut {
        let mut out = BytesMut::new();
        write_text(text, None, &mut Vec::new(), &mut out).unwrap();
        out
    }

    fn text_of_wire(wire: &[u8]) -> String {
        WireNumeric::parse(&wire[4..]).unwrap().to_text().unwrap()
    }

    #[test]
    fn text_round_trips_through_the_wire_form() {
        for text in [
            "0",
            "1",
            "-1",
            "12.34",
            "-0.0005",
            "10000",
            "123456789012345678901234567890.123456789",
            "0.10",
            "99990000",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.00000000",
        ] {
            assert_eq!(text_of_wire(&wire_of_text(text)), text, "{text}");
        }
        assert_eq!(text_of_wire(&wire_of_text("007.50")), "7.50");
        assert!(write_text("1e5", None, &mut Vec::new(), &mut BytesMut::new()).is_err());
        assert!(write_text("", None, &mut Vec::new(), &mut BytesMut::new()).is_err());
        let huge = format!("1{}", "0".repeat(131_072));
        assert!(write_text(&huge, None, &mut Vec::new(), &mut BytesMut::new()).is_err());
    }

    #[test]
    fn scaled_integers_round_trip_exactly() {
        for (value, scale) in [
            (0i128, 2i8),
            (1234, 2),
            (-5, 4),
            (99_999_999_999_999_999_999_999_999_999_999_999_999i128, 5),
            (-12_345_678_901_234_567_890_123_456_789i128, 12),
            (7, 0),
            (123, -2),
        ] {
            let mut wire = BytesMut::new();
            write_scaled(value, scale, None, &mut Vec::new(), &mut wire).unwrap();
            let parsed = WireNumeric::parse(&wire[4..]).unwrap();
            let target_scale = scale.max(0);
            let expected = if scale < 0 {
                value * 10i128.pow((-scale) as u32)
            } else {
                value
            };
            assert_eq!(
                parsed.to_scaled::<i128>(target_scale).unwrap(),
                expected,
                "{value} e-{scale}"
            );
        }
    }

    #[test]
    fn wide_decimals_and_text_agree() {
        let mut wire = BytesMut::new();
        write_scaled(-123456789i128, 7, None, &mut Vec::new(), &mut wire).unwrap();
        assert_eq!(text_of_wire(&wire), "-12.3456789");
        let big =
            i256::from_string("1234567890123456789012345678901234567890123456789012345").unwrap();
        let mut wire = BytesMut::new();
        write_scaled(big, 20, None, &mut Vec::new(), &mut wire).unwrap();
        assert!(write_scaled(i256::MIN, 1, None, &mut Vec::new(), &mut BytesMut::new()).is_err());
        assert!(write_scaled(1i128, -128, None, &mut Vec::new(), &mut BytesMut::new()).is_err());
        assert_eq!(
            text_of_wire(&wire),
            "12345678901234567890123456789012345.67890123456789012345"
        );
        let parsed = WireNumeric::parse(&wire[4..]).unwrap();
        assert_eq!(parsed.to_scaled::<i256>(20).unwrap(), big);
    }

    #[test]
    fn values_that_do_not_fit_are_errors_not_rounding() {
        let wire = wire_of_text("1.2345");
        let parsed = WireNumeric::parse(&wire[4..]).unwrap();
        assert!(parsed
            .to_scaled::<i128>(2)
            .unwrap_err()
            .contains("fractional digits"));
        assert_eq!(parsed.to_scaled::<i128>(4).unwrap(), 12345);
        let wire = wire_of_text("NaN");
        assert!(WireNumeric::parse(&wire[4..])
            .unwrap()
            .to_scaled::<i128>(2)
            .is_err());
        let wire = wire_of_text("1000000000000000000000000000000000000000");
        assert!(WireNumeric::parse(&wire[4..])
            .unwrap()
            .to_scaled::<i128>(0)
            .is_err());
        assert!(WireNumeric::parse(&[0, 1, 0, 0]).is_err());
        assert!(WireNumeric::parse(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
