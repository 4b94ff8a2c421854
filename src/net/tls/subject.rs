//! The common name (CN) of a certificate's subject, for naming a client.
//!
//! rustls verifies certificates but does not describe them, and a full
//! X.509 parser is a large dependency for one field. A certificate is DER:
//! nested tag-length-value items. The subject is the sixth item of the
//! to-be-signed part (the fifth when the optional version is absent), a
//! list of sets of (OID, string) pairs; the CN is the pair whose OID is
//! 2.5.4.3. Anything unexpected yields `None`, never a panic: the bytes
//! come from the client (though only after its certificate was verified).

/// The OID 2.5.4.3 (`id-at-commonName`), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// The last CN in the subject of a DER certificate, as text (invalid
/// UTF-8 replaced); `None` if it has none or is not a certificate.
///
/// ```
/// assert_eq!(selectd::net::tls::common_name(b"not DER"), None);
/// ```
pub fn common_name(der: &[u8]) -> Option<String> {
    let (tag, certificate, _) = item(der)?;
    expect(tag, SEQUENCE)?;
    let (tag, mut tbs, _) = item(certificate)?;
    expect(tag, SEQUENCE)?;
    let (tag, _, rest) = item(tbs)?;
    if tag == VERSION {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs = item(tbs)?.2;
    }
    let (tag, mut names, _) = item(tbs)?;
    expect(tag, SEQUENCE)?;
    let mut found = None;
    while !names.is_empty() {
        let (tag, mut set, rest) = item(names)?;
        expect(tag, SET)?;
        names = rest;
        while !set.is_empty() {
            let (tag, pair, rest) = item(set)?;
            expect(tag, SEQUENCE)?;
            set = rest;
            let (tag, oid, value) = item(pair)?;
            expect(tag, OID)?;
            if oid == COMMON_NAME {
                let (tag, text, _) = item(value)?;
                found = Some(string(tag, text)?);
            }
        }
    }
    found
}

fn expect(tag: u8, wanted: u8) -> Option<()> {
    (tag == wanted).then_some(())
}

/// One DER item: its tag, its contents, and what follows it.
fn item(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let (digits, rest) = rest.split_at(count);
        let len = digits
            .iter()
            .fold(0usize, |len, &digit| (len << 8) | usize::from(digit));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

/// A directory string: UTF8String, PrintableString, IA5String,
/// TeletexString (taken as Latin-1) or BMPString (UTF-16).
fn string(tag: u8, text: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => Some(String::from_utf8_lossy(text).into_owned()),
        0x14 => Some(text.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units = text
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER: `tag`, a short length, `contents`.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    fn name(pairs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut sets = Vec::new();
        for (oid, tag, value) in pairs {
            let pair = [der(OID, oid), der(*tag, value)].concat();
            sets.extend(der(SET, &der(SEQUENCE, &pair)));
        }
        der(SEQUENCE, &sets)
    }

    fn certificate(version: bool, subject: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(der(VERSION, &der(0x02, &[2])));
        }
        tbs.extend(der(0x02, &[1, 2, 3])); // serial
        tbs.extend(der(SEQUENCE, &der(OID, &[1, 2]))); // signature
        tbs.extend(name(&[(COMMON_NAME, 0x0c, b"issuer")]));
        tbs.extend(der(SEQUENCE, &[0u8; 200])); // validity, long form length
        tbs.extend_from_slice(subject);
        der(
            SEQUENCE,
            &[der(SEQUENCE, &tbs), der(SEQUENCE, &[])].concat(),
        )
    }

    #[test]
    fn the_subject_common_name_is_found() {
        let subject = name(&[
            (&[0x55, 0x04, 0x06], 0x13, b"TR"),
            (COMMON_NAME, 0x0c, b"alice"),
        ]);
        assert_eq!(
            common_name(&certificate(true, &subject)).as_deref(),
            Some("alice")
        );
        assert_eq!(
            common_name(&certificate(false, &subject)).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn bmp_strings_are_decoded() {
        let subject = name(&[(COMMON_NAME, 0x1e, &[0, b'a', 0x01, 0x31])]);
        assert_eq!(
            common_name(&certificate(true, &subject)).as_deref(),
            Some("aı")
        );
    }

    #[test]
    fn a_subject_without_cn_has_none() {
        let subject = name(&[(&[0x55, 0x04, 0x0a], 0x0c, b"org")]);
        assert_eq!(common_name(&certificate(true, &subject)), None);
    }

    #[test]
    fn truncated_or_foreign_bytes_yield_none() {
        let subject = name(&[(COMMON_NAME, 0x0c, b"alice")]);
        let whole = certificate(true, &subject);
        for cut in 0..whole.len() {
            assert_eq!(common_name(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[0x30, 0x89, 1, 2, 3]), None);
    }
}
