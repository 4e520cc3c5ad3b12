//! Decimal numbers read and written without std's float formatting and
//! parsing: those bring in Grisu, Dragon4 and Eisel-Lemire with their
//! tables, about 30 KiB of the 1 MiB budget, for three places a line shows
//! a rate or a chance and two places read one (`--miss`, `/proc/uptime`).
//! Exact to the last ulp is not needed there: a few significant figures
//! are what a line shows and what the judge uses.

/// `x` with `places` decimals, rounded half away from zero: `27.04` at 1
/// place is `"27.0"`. Not finite, or too large for 30 digits: `"?"`.
pub fn fixed(x: f64, places: u32) -> String {
    let places = places.min(12);
    let scale = 10u128.pow(places);
    let scaled = (x.abs() * scale as f64).round();
    if !scaled.is_finite() || scaled >= 1e30 {
        return "?".to_string();
    }
    let scaled = scaled as u128;
    let sign = if x < 0.0 && scaled != 0 { "-" } else { "" };
    let (whole, frac) = (scaled / scale, scaled % scale);
    if places == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac:0width$}", width = places as usize)
    }
}

/// `x` in the fewest decimals (at most 12) that give it back to a
/// millionth of itself: `0.05`, `0.25`, `1`.
pub fn short(x: f64) -> String {
    for places in 0..12 {
        let s = fixed(x, places);
        if parse(&s).is_some_and(|y| (y - x).abs() <= x.abs() * 1e-6) {
            return s;
        }
    }
    fixed(x, 12)
}

/// A decimal as people write one: `12`, `0.001`, `.5`, `1e-3`, `2.5E+2`,
/// with an optional sign. Anything else (spaces, `inf`, `nan`, hex, a
/// second point, an empty part): `None`.
pub fn parse(s: &str) -> Option<f64> {
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let mut digits: u64 = 0;
    // Digits past 19 cannot change the figures that matter here; they
    // only move the decimal point (when before it).
    let mut kept = 0u32;
    let mut shift: i32 = 0;
    for (i, part) in [whole, frac].into_iter().enumerate() {
        for b in part.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            if kept < 19 {
                digits = digits * 10 + u64::from(b - b'0');
                if digits != 0 {
                    kept += 1;
                }
                if i == 1 {
                    shift -= 1;
                }
            } else if i == 0 {
                shift += 1;
            }
        }
    }
    if let Some(e) = exponent {
        let (e_negative, e) = match e.as_bytes().first()? {
            b'-' => (true, &e[1..]),
            b'+' => (false, &e[1..]),
            _ => (false, e),
        };
        if e.is_empty() || e.len() > 4 || !e.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let e: i32 = e.parse().ok()?;
        shift += if e_negative { -e } else { e };
    }
    let value = if digits == 0 {
        0.0
    } else {
        digits as f64 * 10f64.powi(shift.clamp(-400, 400))
    };
    Some(if negative { -value } else { value })
}

/// `1e-3`, `0.05`: a chance as people write it.
pub fn chance(p: f64) -> String {
    if p > 1.001e-3 {
        return short(p);
    }
    // p = m x 10^-k with m in [1, 10); the slack keeps 1e-3 at k = 3
    // whichever way log10 rounds.
    let k = (-p.log10() - 1e-9).ceil();
    format!("{}e-{}", short(p * 10f64.powi(k as i32)), k as i32)
}

/// Arrivals a second: three figures, no exponent.
pub fn rate(r: f64) -> String {
    let places = if r >= 100.0 {
        0
    } else if r >= 10.0 {
        1
    } else {
        2
    };
    fixed(r, places)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chances_and_rates_read_as_people_write_them() {
        assert_eq!(chance(1e-3), "1e-3");
        assert_eq!(chance(0.05), "0.05");
        assert_eq!(rate(27.04), "27.0");
        assert_eq!(rate(0.5), "0.50");
        assert_eq!(rate(212.6), "213");
    }
    use proptest::prelude::*;

    #[test]
    fn fixed_rounds_as_a_line_shows_it() {
        assert_eq!(fixed(27.04, 1), "27.0");
        assert_eq!(fixed(0.5, 2), "0.50");
        assert_eq!(fixed(212.6, 0), "213");
        assert_eq!(fixed(0.0, 2), "0.00");
        assert_eq!(fixed(-1.25, 1), "-1.3");
        assert_eq!(fixed(-0.001, 1), "0.0");
        assert_eq!(fixed(f64::NAN, 1), "?");
        assert_eq!(fixed(f64::INFINITY, 1), "?");
        assert_eq!(fixed(1e40, 1), "?");
    }

    #[test]
    fn short_drops_what_does_not_matter() {
        assert_eq!(short(0.05), "0.05");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.1 + 0.2), "0.3");
    }

    #[test]
    fn parse_reads_what_people_write() {
        assert_eq!(parse("12"), Some(12.0));
        assert_eq!(parse("0.001"), Some(0.001));
        assert_eq!(parse(".5"), Some(0.5));
        assert_eq!(parse("5."), Some(5.0));
        assert_eq!(parse("1e-3"), Some(0.001));
        assert_eq!(parse("2.5E+2"), Some(250.0));
        assert_eq!(parse("-4"), Some(-4.0));
        assert_eq!(parse("12345.67"), Some(12345.67));
        for bad in [
            "", ".", "e3", "1e", "1e+", "1.2.3", " 1", "1 ", "inf", "nan", "0x10", "1e99999",
            "--1", "+",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        // Against std's exact parser, on the numbers this reads: a
        // relative error far below any figure a line or the judge uses.
        #[test]
        fn parse_agrees_with_std(m in 0u64..10_000_000_000, places in 0usize..12, e in -30i32..30) {
            let digits = m.to_string();
            let s = if places == 0 || places >= digits.len() {
                format!("{digits}e{e}")
            } else {
                let (a, b) = digits.split_at(digits.len() - places);
                format!("{a}.{b}e{e}")
            };
            let ours = parse(&s).unwrap();
            let std: f64 = s.parse().unwrap();
            prop_assert!((ours - std).abs() <= std.abs() * 1e-12, "{s}: {ours} vs {std}");
        }

        #[test]
        fn fixed_reads_back_within_its_last_place(x in -1e9f64..1e9, places in 0u32..7) {
            let back = parse(&fixed(x, places)).unwrap();
            let half = 0.5 * 10f64.powi(-(places as i32));
            prop_assert!((back - x).abs() <= half * (1.0 + 1e-6) + x.abs() * 1e-15, "{x} at {places}");
        }
    }
}
