//! Path segments: every byte of the UTF-8 outside unreserved is encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but `A-Z a-z 0-9 - . _ ~` (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a namespace, key or stream name for one path segment,
/// byte by byte of its UTF-8, as dedupd decodes it (exactly once).
///
/// ```
/// assert_eq!(dedupd_client::encode_segment("a b/%é"), "a%20b%2F%25%C3%A9");
/// assert_eq!(dedupd_client::encode_segment("A-z.0_9~"), "A-z.0_9~");
/// ```
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn the_readme_table() {
        for (id, path) in [
            ("a b", "a%20b"),
            ("a%20b", "a%2520b"),
            ("100%", "100%25"),
            ("x/y", "x%2Fy"),
            ("k?x", "k%3Fx"),
            ("h#1", "h%231"),
            ("é", "%C3%A9"),
            ("+", "%2B"),
            ("\0", "%00"),
        ] {
            assert_eq!(encode_segment(id), path, "{id:?}");
        }
    }
}
