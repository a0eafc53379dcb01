//! Gzip for `/metrics` without compressing the whole exposition at every scrape.
//!
//! Each shared piece of the exposition (a family of one chunk of machines, a chunk's status
//! lines) is deflated once, on the first gzip scrape that needs it, into byte-aligned deflate
//! blocks that refer to nothing before them (a fresh stream ended by a sync flush). Such
//! blocks can follow each other in any order, so a response is the gzip header, the pieces'
//! blocks in exposition order, one final empty block and the trailer, whose CRC-32 is
//! combined from the pieces' own (RFC 1951 §3.2.3, RFC 1952 §2.3). The text written for the
//! scrape itself (headers, counts, group series, process metrics) is deflated as it comes.

use std::cell::RefCell;
use std::collections::VecDeque;

use axum::body::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// A piece of text as deflate blocks that end byte-aligned and are not final, with the
/// CRC-32 and length of the text.
#[derive(Debug, Clone)]
pub struct Deflated {
    pub bytes: Bytes,
    crc: crc32fast::Hasher,
    length: u64,
}

thread_local! {
    // A compressor's state is ~300 KB: one per blocking thread, reset for every piece.
    static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
}

/// Deflates `text` on its own (nothing refers to what came before it).
pub fn deflate(text: &[u8]) -> anyhow::Result<Deflated> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(text);
    let bytes = COMPRESS.with_borrow_mut(|c| -> anyhow::Result<Vec<u8>> {
        c.reset();
        let mut out = Vec::with_capacity(text.len() / 4 + 64);
        loop {
            let done = usize::try_from(c.total_in())?;
            c.compress_vec(&text[done..], &mut out, FlushCompress::Sync)?;
            // The flush is complete once all input is taken and output room was left over.
            if usize::try_from(c.total_in())? == text.len() && out.len() < out.capacity() {
                // Kept as long as the text: give back what doubling left over.
                if out.capacity() > out.len() + out.len() / 4 {
                    out.shrink_to_fit();
                }
                return Ok(out);
            }
            out.reserve(out.capacity().max(4096));
        }
    })?;
    Ok(Deflated {
        bytes: Bytes::from(bytes),
        crc,
        length: text.len() as u64,
    })
}

/// A gzip member assembled from deflated pieces.
#[derive(Debug)]
pub struct Member {
    pieces: VecDeque<Bytes>,
    crc: crc32fast::Hasher,
    length: u64,
}

impl Default for Member {
    fn default() -> Self {
        Self::new()
    }
}

impl Member {
    pub fn new() -> Self {
        // ID1 ID2, CM = deflate, no flags, no modification time, no extra flags, OS unknown.
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        Self {
            pieces: VecDeque::from([Bytes::from_static(&HEADER)]),
            crc: crc32fast::Hasher::new(),
            length: 0,
        }
    }

    pub fn push(&mut self, piece: &Deflated) {
        if !piece.bytes.is_empty() {
            self.pieces.push_back(piece.bytes.clone());
            self.crc.combine(&piece.crc);
            self.length += piece.length;
        }
    }

    /// The member's bytes, in order: what was pushed, a final empty block (fixed Huffman:
    /// BFINAL, BTYPE 01, end of block) and the CRC-32 and length of the text.
    pub fn finish(mut self) -> VecDeque<Bytes> {
        self.pieces.push_back(Bytes::from_static(&[0x03, 0x00]));
        // ISIZE is the length modulo 2^32.
        let length = (self.length & u64::from(u32::MAX)) as u32;
        let mut trailer = Vec::with_capacity(8);
        trailer.extend_from_slice(&self.crc.finalize().to_le_bytes());
        trailer.extend_from_slice(&length.to_le_bytes());
        self.pieces.push_back(Bytes::from(trailer));
        self.pieces
    }
}

/// Whether the `Accept-Encoding` header lines (one list, however many lines it takes) accept
/// gzip: `gzip` (or `x-gzip`, or else `*`) listed without `q=0`.
pub fn accepted<'a>(accept_encoding: impl IntoIterator<Item = &'a str>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for item in accept_encoding.into_iter().flat_map(|line| line.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (key, value) = p.split_once('=')?;
                key.trim().eq_ignore_ascii_case("q").then(|| value.trim())
            })
            .next()
            .is_none_or(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(pieces: VecDeque<Bytes>) -> String {
        let whole: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut text = String::new();
        flate2::read::GzDecoder::new(whole.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    proptest::proptest! {
        /// Pieces deflated apart and joined read back as the joined text, with a valid
        /// CRC-32 and length (the decoder checks both).
        #[test]
        fn joined_pieces_are_one_gzip_member(
            pieces in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 0..8),
        ) {
            let texts: Vec<String> = pieces
                .iter()
                .map(|p| p.iter().map(|b| ["ab", "c", "\n", "é"][*b as usize]).collect())
                .collect();
            let mut member = Member::new();
            for t in &texts {
                member.push(&deflate(t.as_bytes()).unwrap());
            }
            proptest::prop_assert_eq!(gunzip(member.finish()), texts.concat());
        }
    }

    #[test]
    fn a_large_piece_needs_several_rounds_of_output() {
        // Incompressible enough that the first output guess is too small.
        let text: String = (0..200_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect();
        let mut member = Member::new();
        member.push(&deflate(text.as_bytes()).unwrap());
        member.push(&deflate(b"tail\n").unwrap());
        assert_eq!(gunzip(member.finish()), text + "tail\n");
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        for (header, gzip) in [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("deflate, gzip;q=1.0, *;q=0.5"), true),
            (Some("GZIP"), true),
            (Some("x-gzip"), true),
            (Some("br"), false),
            (Some("identity"), false),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.000"), false),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("gzip;q=0, *"), false),
            (Some("gzip;q=nonsense"), false),
        ] {
            assert_eq!(accepted(header), gzip, "{header:?}");
        }
    }
}
