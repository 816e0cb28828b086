//! The two mechanical rewrites that turn a kernel translation unit (exactly what NVRTC compiles)
//! into C++ for the host emulator (`ls_emu.h` explains why each is needed):
//! `asm [volatile](TEMPLATE : outputs : inputs)` → `::ls_emu::ptx(TEMPLATE, {operands})` and
//! `__shared__` declarations → per-block storage. Line numbers are preserved, so g++ and the
//! sanitizers point at the kernel files' own lines.

/// Applies both rewrites; an `asm` or `__shared__` form it does not understand is an error.
pub fn rewrite(src: &str) -> Result<String, String> {
    let s = rewrite_asm(src)?;
    rewrite_shared(&s)
}

/// Byte ranges of `src` that are code (outside comments and string/char literals).
fn code_mask(src: &[u8]) -> Vec<bool> {
    let mut mask = vec![true; src.len()];
    let mut i = 0;
    while i < src.len() {
        let start = i;
        if src[i..].starts_with(b"//") {
            while i < src.len() && src[i] != b'\n' {
                i += 1;
            }
        } else if src[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < src.len() && !src[i..].starts_with(b"*/") {
                i += 1;
            }
            i = (i + 2).min(src.len());
        } else if src[i] == b'"' || src[i] == b'\'' {
            i = skip_literal(src, i);
        } else {
            i += 1;
            continue;
        }
        mask[start..i].iter_mut().for_each(|m| *m = false);
    }
    mask
}

/// Index just past the string or char literal starting at `i`.
fn skip_literal(src: &[u8], mut i: usize) -> usize {
    let q = src[i];
    i += 1;
    while i < src.len() && src[i] != q {
        i += if src[i] == b'\\' { 2 } else { 1 };
    }
    (i + 1).min(src.len())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Start offsets of the identifier `word` where it stands as a whole token in code.
fn find_token(src: &str, word: &str) -> Vec<usize> {
    let b = src.as_bytes();
    let mask = code_mask(b);
    src.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            mask[i]
                && (i == 0 || !is_ident(b[i - 1]))
                && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
        })
        .collect()
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(b: &[u8], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_literal(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err("unbalanced parentheses in an asm statement".into())
}

/// Splits at top-level occurrences of `sep` (outside parentheses and literals; `::` is never
/// a separator).
fn split_top(s: &str, sep: u8) -> Vec<&str> {
    let b = s.as_bytes();
    let (mut parts, mut depth, mut start, mut i) = (Vec::new(), 0i32, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_literal(b, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            c if c == sep && depth == 0 => {
                let scope =
                    sep == b':' && (b.get(i + 1) == Some(&b':') || (i > 0 && b[i - 1] == b':'));
                if !scope {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// `"cons"(expr)` → `::ls_emu::out("cons", (expr))` or `::ls_emu::in(...)`.
fn operand(text: &str, output: bool) -> Result<String, String> {
    let t = text.trim();
    if !t.starts_with('"') {
        return Err(format!("asm operand without a constraint string: `{t}`"));
    }
    let end = skip_literal(t.as_bytes(), 0);
    let (cons, rest) = t.split_at(end);
    let rest = rest.trim();
    if !(rest.starts_with('(') && rest.ends_with(')')) {
        return Err(format!(
            "asm operand `{t}` is not \"constraint\"(expression)"
        ));
    }
    let f = if output { "out" } else { "in" };
    Ok(format!("::ls_emu::{f}({cons}, {rest})"))
}

fn rewrite_asm(src: &str) -> Result<String, String> {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut last = 0;
    for at in find_token(src, "asm") {
        let mut i = at + 3;
        let after = src[i..].trim_start();
        i = src.len() - after.len();
        if let Some(rest) = after.strip_prefix("volatile") {
            i = src.len() - rest.trim_start().len();
        }
        if b.get(i) != Some(&b'(') {
            return Err(format!("`asm` at byte {at} is not followed by `(`"));
        }
        let close = matching_paren(b, i)?;
        let parts = split_top(&src[i + 1..close], b':');
        if parts.len() > 3 {
            return Err("asm clobber lists are not emulated".into());
        }
        let mut ops = Vec::new();
        for (k, list) in parts.iter().enumerate().skip(1) {
            for o in split_top(list, b',') {
                if !o.trim().is_empty() {
                    ops.push(operand(o, k == 1)?);
                }
            }
        }
        let newlines = src[at..=close].matches('\n').count();
        out.push_str(&src[last..at]);
        out.push_str(&format!(
            "::ls_emu::ptx({}, {{{}}}){}",
            parts[0].trim(),
            ops.join(", "),
            "\n".repeat(newlines)
        ));
        last = close + 1;
    }
    out.push_str(&src[last..]);
    Ok(out)
}

fn rewrite_shared(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len());
    let mut last = 0;
    for at in find_token(src, "__shared__") {
        let semi = src[at..]
            .find(';')
            .map(|k| at + k)
            .ok_or("`__shared__` declaration without `;`")?;
        let decl = src[at + "__shared__".len()..semi].trim();
        let pre = &src[last..at];
        let before = pre.trim_end();
        let is_extern = before.ends_with("extern")
            && !is_ident(
                *before
                    .as_bytes()
                    .get(before.len().wrapping_sub(7))
                    .unwrap_or(&b' '),
            );
        let head = decl.split('[').next().unwrap_or("").trim_end();
        let name_at = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |k| k + 1);
        let (ty, name) = (head[..name_at].trim(), &head[name_at..]);
        if ty.is_empty() || name.is_empty() {
            return Err(format!("cannot read the shared declaration `{decl}`"));
        }
        if is_extern {
            if decl[head.len()..].trim() != "[]" {
                return Err(format!("`extern __shared__ {decl}` is not `T name[]`"));
            }
            out.push_str(&before[..before.len() - "extern".len()]);
            out.push_str(&pre[before.len()..]);
            out.push_str(&format!(
                "{ty} *const {name} = static_cast<{ty} *>(::ls_emu::dyn_shared());"
            ));
        } else {
            out.push_str(pre);
            out.push_str(&format!(
                "static {decl}; ::ls_emu::shared_decl(&{name}, sizeof({name}));"
            ));
        }
        last = semi + 1;
    }
    out.push_str(&src[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_asm_with_operands_and_keeps_lines() {
        let src = "x;\nasm volatile(\n  \"mma \" \"x;\\n\"\n  : \"+f\"(d[0]), \"=r\"(v)\n  : \"r\"(a[(1)]), \"l\"(p));\nasm(\"bar.sync 0;\");\n";
        let out = rewrite(src).unwrap();
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(out.contains("::ls_emu::ptx(\"mma \" \"x;\\n\", {::ls_emu::out(\"+f\", (d[0])), ::ls_emu::out(\"=r\", (v)), ::ls_emu::in(\"r\", (a[(1)])), ::ls_emu::in(\"l\", (p))})"), "{out}");
        assert!(out.contains("::ls_emu::ptx(\"bar.sync 0;\", {})"), "{out}");
        assert!(!out.contains("asm"), "{out}");
    }

    #[test]
    fn leaves_comments_and_identifiers_alone() {
        let src = "/* asm(\"x\") */ int basm = 1; // asm volatile\nconst char *s = \"asm(\";\n";
        assert_eq!(rewrite(src).unwrap(), src);
    }

    #[test]
    fn rewrites_static_and_dynamic_shared() {
        let src = "  __shared__ double red[6][N];\n  extern __shared__ float buf[];\n";
        let out = rewrite(src).unwrap();
        assert!(out.contains("static double red[6][N]; ::ls_emu::shared_decl(&red, sizeof(red));"));
        assert!(out.contains("  float *const buf = static_cast<float *>(::ls_emu::dyn_shared());"));
        assert!(!out.contains("extern"), "{out}");
    }

    #[test]
    fn refuses_what_it_cannot_emulate() {
        assert!(rewrite("asm(\"x\" : : : \"memory\");").is_err());
        assert!(rewrite("asm volatile x;").is_err());
        assert!(rewrite("extern __shared__ float b[4];").is_err());
    }
}
