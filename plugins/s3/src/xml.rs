//! The little XML S3 speaks: answers are one root element whose children
//! are text (`<Error><Code>NoSuchBucket</Code>…</Error>`,
//! `<InitiateMultipartUploadResult><UploadId>…</UploadId>…`), and one
//! request body, `CompleteMultipartUpload`.
//!
//! A small reader rather than a crate: the plugin needs the root's name and
//! the text of a few direct children, and a hand-written scanner of that
//! much is smaller in the component than a general parser. It reads only
//! what it understands: anything malformed is `None`, never a panic.

/// An S3 answer: its root element and the text of its direct children that
/// hold only text, in document order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) root: String,
    children: Vec<(String, String)>,
}

impl Answer {
    /// Parses `body`; `None` when it is not an XML document with a root.
    pub(crate) fn parse(body: &[u8]) -> Option<Answer> {
        let text = std::str::from_utf8(body).ok()?;
        let mut rest = skip_prolog(text)?;
        let (root, after_root) = open_tag(rest)?;
        rest = after_root;
        let mut answer = Answer {
            root: root.to_owned(),
            children: Vec::new(),
        };
        // Children, each either text-only (kept) or nested (skipped).
        loop {
            rest = rest.trim_start();
            if rest.starts_with("</") {
                return Some(answer);
            }
            let (name, after) = open_tag(rest)?;
            let close = format!("</{name}>");
            let end = after.find(&close)?;
            let inner = &after[..end];
            if !inner.contains('<') {
                answer.children.push((name.to_owned(), unescape(inner)?));
            }
            rest = &after[end + close.len()..];
        }
    }

    /// The text of the first child called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|(child, _)| child == name)
            .map(|(_, text)| text.as_str())
    }
}

/// Skips the XML declaration, comments and whitespace before the root.
fn skip_prolog(mut text: &str) -> Option<&str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("<?") {
            text = &rest[rest.find("?>")? + 2..];
        } else if let Some(rest) = text.strip_prefix("<!--") {
            text = &rest[rest.find("-->")? + 3..];
        } else {
            return Some(text);
        }
    }
}

/// `<Name attr="…">` at the start of `text`: the name and what follows the
/// tag. A self-closing tag or anything else that is not an opening tag is
/// `None`.
fn open_tag(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let tag = &rest[..end];
    if tag.ends_with('/') || tag.starts_with(['/', '!', '?']) {
        return None;
    }
    let name = tag.split_whitespace().next()?;
    Some((name, &rest[end + 1..]))
}

/// Replaces the predefined entities and character references.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find(';')?;
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(decoded);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Escapes text for an element's content.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body of a `CompleteMultipartUpload`: each part by number and the
/// ETag the server answered for it, in order.
pub(crate) fn complete_multipart_upload(etags: &[String]) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for (index, etag) in etags.iter().enumerate() {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            index + 1,
            escape(etag)
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_s3_error() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist &amp; never did</Message><BucketName>b</BucketName><RequestId>1</RequestId></Error>"#;
        let answer = Answer::parse(body).unwrap();
        assert_eq!(answer.root, "Error");
        assert_eq!(answer.get("Code"), Some("NoSuchBucket"));
        assert_eq!(
            answer.get("Message"),
            Some("The specified bucket does not exist & never did")
        );
        assert_eq!(answer.get("Missing"), None);
    }

    #[test]
    fn reads_children_beside_nested_ones_and_a_namespace() {
        let body =
            br#"<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><Owner><ID>x</ID></Owner>
  <UploadId>VXBsb2FkIElE&#x2B;&#47;</UploadId>
</InitiateMultipartUploadResult>"#;
        let answer = Answer::parse(body).unwrap();
        assert_eq!(answer.root, "InitiateMultipartUploadResult");
        assert_eq!(answer.get("UploadId"), Some("VXBsb2FkIElE+/"));
        assert_eq!(answer.get("Bucket"), Some("b"));
        assert_eq!(answer.get("Owner"), None);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for body in [
            &b""[..],
            b"not xml",
            b"<Error><Code>x</Error>",
            b"<Error><Code>&bogus;</Code></Error>",
            b"<Error/>",
            b"\xff\xfe",
            b"<?xml",
            b"<Error><Code>x</Code>",
        ] {
            assert_eq!(Answer::parse(body), None, "{body:?}");
        }
    }

    #[test]
    fn the_complete_body_names_every_part_in_order() {
        let body = complete_multipart_upload(&["\"a\"".into(), "\"b&c\"".into()]);
        assert!(body.contains(
            "<Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"b&amp;c\"</ETag></Part>"
        ));
        assert!(body.ends_with("</CompleteMultipartUpload>"));
    }
}
