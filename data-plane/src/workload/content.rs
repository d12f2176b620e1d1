//! Reading OpenAI chat messages leniently: content is a string, an array of
//! parts, or null; anything else is tolerated and read as no text.

use std::borrow::Cow;

use serde_json::Value;

/// Content part types that carry an image.
const IMAGE_PART_TYPES: &[&str] = &["image_url", "input_image", "image"];

pub(crate) fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Whether a content part is an image (`image_url`, `input_image`).
pub(crate) fn is_image(part: &Value) -> bool {
    part.get("type")
        .and_then(Value::as_str)
        .is_some_and(|kind| IMAGE_PART_TYPES.contains(&kind))
}

/// The text of a content part: a `text` field, or the part itself when it is
/// a bare string.
pub(crate) fn part_text(part: &Value) -> Option<&str> {
    match part {
        Value::String(text) => Some(text),
        Value::Object(fields) => fields.get("text").and_then(Value::as_str),
        _ => None,
    }
}

/// All text of a message's content; text parts are joined by newlines.
pub(crate) fn text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(Value::Array(parts)) => {
            let mut texts = parts.iter().filter_map(part_text);
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(only), None) => Cow::Borrowed(only),
                (Some(first), Some(second)) => {
                    let mut joined = format!("{first}\n{second}");
                    for more in texts {
                        joined.push('\n');
                        joined.push_str(more);
                    }
                    Cow::Owned(joined)
                }
            }
        }
        _ => Cow::Borrowed(""),
    }
}

/// Whether any content part of a message is an image.
pub(crate) fn has_image(message: &Value) -> bool {
    match message.get("content") {
        Some(Value::Array(parts)) => parts.iter().any(is_image),
        _ => false,
    }
}

pub(crate) fn non_empty_array(value: &Value) -> bool {
    value.as_array().is_some_and(|items| !items.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_reads_strings_parts_and_nothing_else() {
        let cases = [
            (json!("plain"), "plain"),
            (json!([{"type": "text", "text": "one"}]), "one"),
            (
                json!([{"type": "text", "text": "one"}, {"type": "image_url"}, "two", {"type": "text", "text": "three"}]),
                "one\ntwo\nthree",
            ),
            (json!([{"type": "image_url"}]), ""),
            (json!(null), ""),
            (json!(42), ""),
            (json!({"text": "not a part list"}), ""),
        ];
        for (content, expected) in cases {
            assert_eq!(text(Some(&content)), expected, "{content}");
        }
        assert_eq!(text(None), "");
    }

    #[test]
    fn images_are_found_by_part_type() {
        assert!(has_image(
            &json!({"content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]})
        ));
        assert!(has_image(&json!({"content": [{"type": "input_image"}]})));
        assert!(!has_image(
            &json!({"content": [{"type": "text", "text": "image_url"}]})
        ));
        assert!(!has_image(&json!({"content": "image_url"})));
    }
}
