//! Content types recognised from an upload's first bytes, whatever its name or declared type.

/// Bytes needed to recognise every supported type.
pub(crate) const NEEDED: usize = 12;

/// An image type the uploader recognises from its signature bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// GIF (`GIF87a`/`GIF89a`).
    Gif,
    /// WebP (`RIFF....WEBP`).
    Webp,
}

impl ContentType {
    /// Every recognised type.
    pub const ALL: [ContentType; 4] = [ContentType::Png, ContentType::Jpeg, ContentType::Gif, ContentType::Webp];

    /// The type whose signature `head` starts with, if any.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ContentType::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ContentType::Jpeg)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(ContentType::Gif)
        } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(ContentType::Webp)
        } else {
            None
        }
    }

    /// The MIME type stored with the blob.
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Png => "image/png",
            ContentType::Jpeg => "image/jpeg",
            ContentType::Gif => "image/gif",
            ContentType::Webp => "image/webp",
        }
    }

    /// The file extension of generated names.
    pub fn extension(self) -> &'static str {
        match self {
            ContentType::Png => "png",
            ContentType::Jpeg => "jpg",
            ContentType::Gif => "gif",
            ContentType::Webp => "webp",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ContentType::Png => "PNG",
            ContentType::Jpeg => "JPEG",
            ContentType::Gif => "GIF",
            ContentType::Webp => "WebP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        assert_eq!(
            ContentType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ContentType::Png)
        );
        assert_eq!(
            ContentType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(ContentType::Jpeg)
        );
        assert_eq!(ContentType::sniff(b"GIF89a\x01\0\x01\0"), Some(ContentType::Gif));
        assert_eq!(ContentType::sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ContentType::Webp));
    }

    #[test]
    fn other_content_is_not_an_image() {
        assert_eq!(ContentType::sniff(b"%PDF-1.7"), None);
        assert_eq!(ContentType::sniff(b"<html>"), None);
        assert_eq!(ContentType::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(ContentType::sniff(b""), None);
    }
}
