//! Helpers shared by the fuzz targets (included with `#[path]`, not a crate).
#![allow(dead_code)]

/// A row in the kernel's format, from the lib's one fixture encoder.
#[allow(unused_imports)] // not every target writes rows
pub use prestop_wait::fixture::kernel_row as kernel_line;

/// Tiny JSON string-literal validator and decoder (RFC 8259 section 7).
///
/// Returns the decoded string, or a description of the first syntax error.
/// Rejects anything a strict parser would: missing quotes, trailing bytes,
/// raw control characters, unknown escapes, short `\u` escapes, and lone or
/// misordered UTF-16 surrogates.
pub fn decode_json_string(lit: &str) -> Result<String, String> {
    let inner = lit
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| format!("not quoted: {lit:?}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Err(format!("unescaped quote inside {lit:?}")),
            c if (c as u32) < 0x20 => return Err(format!("raw control char {:#x}", c as u32)),
            '\\' => {
                let e = chars
                    .next()
                    .ok_or("dangling backslash (escapes the closing quote)")?;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hi = hex4(&mut chars)?;
                        let cp = if (0xD800..0xDC00).contains(&hi) {
                            if chars.next() != Some('\\') || chars.next() != Some('u') {
                                return Err("high surrogate without low".into());
                            }
                            let lo = hex4(&mut chars)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err("high surrogate followed by non-low".into());
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else if (0xDC00..0xE000).contains(&hi) {
                            return Err("lone low surrogate".into());
                        } else {
                            hi
                        };
                        out.push(char::from_u32(cp).ok_or("bad code point")?);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Result<u32, String> {
    let mut v = 0;
    for _ in 0..4 {
        let c = chars.next().ok_or("short \\u escape")?;
        v = v * 16
            + c.to_digit(16)
                .ok_or_else(|| format!("non-hex {c:?} in \\u escape"))?;
    }
    Ok(v)
}

/// Set `PRESTOP_FUZZ_SKIP_KNOWN=1` to skip inputs that hit bugs already
/// reported (see fuzz/regressions/README.md), so a long run can look for new
/// ones. Unset (the default), every input is checked.
pub fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("PRESTOP_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

/// Known bug 1 (fuzz/regressions/parse_line/char-boundary-*): `parse_addr`
/// slices a 32-byte address field at byte offsets 8, 16, 24; a multi-byte
/// UTF-8 character across one of them panics ("not a char boundary").
pub fn hits_known_bug(line: &str) -> bool {
    let mut fields = line.split_ascii_whitespace();
    fields.next();
    fields.take(2).any(|f| {
        let ip = f.split_once(':').map_or(f, |(ip, _)| ip);
        ip.len() == 32 && !ip.is_ascii()
    })
}
