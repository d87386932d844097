//! The uncompressed zip archives `torch.save` writes: the central directory (with zip64 for
//! files over 4 GiB) and each entry's bytes, read in place.

use std::collections::HashMap;
use std::ops::Range;

/// One stored entry: where its bytes are and their CRC-32 (0 when torch was told not to
/// compute it).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub data: Range<usize>,
    pub crc: u32,
}

impl Entry {
    /// The entry's bytes, checked against its CRC.
    pub fn bytes<'a>(&self, archive: &'a [u8], name: &str) -> Result<&'a [u8], String> {
        let data = &archive[self.data.clone()];
        if self.crc != 0 && crc32fast::hash(data) != self.crc {
            return Err(format!("`{name}` is corrupt (CRC mismatch)"));
        }
        Ok(data)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
    .ok()
}

const TRUNCATED: &str = "zip directory not found (truncated or not a zip file)";

/// Every entry of the archive `b` by name.
pub(super) fn entries(b: &[u8]) -> Result<HashMap<String, Entry>, String> {
    // The end-of-central-directory record: the last one within 64 KiB (comment) of the end.
    let eocd = (0..=b.len().saturating_sub(22))
        .rev()
        .take(65536 + 22)
        .find(|&i| u32_at(b, i) == Some(0x0605_4b50))
        .ok_or(TRUNCATED)?;
    let mut count = usize::from(u16_at(b, eocd + 10).ok_or(TRUNCATED)?);
    let mut cd = u32_at(b, eocd + 16).ok_or(TRUNCATED)? as usize;
    if count == 0xffff || cd == 0xffff_ffff {
        // Zip64: the locator just before names the zip64 end record.
        let bad = "bad zip64 directory";
        let loc = eocd.checked_sub(20).ok_or(bad)?;
        if u32_at(b, loc) != Some(0x0706_4b50) {
            return Err(bad.into());
        }
        let end64 = u64_at(b, loc + 8).ok_or(bad)?;
        if u32_at(b, end64) != Some(0x0606_4b50) {
            return Err(bad.into());
        }
        count = u64_at(b, end64.saturating_add(32)).ok_or(bad)?;
        cd = u64_at(b, end64.saturating_add(48)).ok_or(bad)?;
    }
    let mut entries = HashMap::new();
    let mut at = cd;
    for _ in 0..count {
        let bad = || format!("bad zip directory entry at byte {at}");
        if u32_at(b, at) != Some(0x0201_4b50) {
            return Err(bad());
        }
        let field = |off: usize| u32_at(b, at + off).ok_or_else(bad);
        let half = |off: usize| u16_at(b, at + off).map(usize::from).ok_or_else(bad);
        let (flags, method, crc) = (half(8)?, half(10)?, field(16)?);
        let (mut size, mut offset) = (field(20)? as usize, field(42)? as usize);
        let (name_len, extra_len, comment_len) = (half(28)?, half(30)?, half(32)?);
        let name = b.get(at + 46..at + 46 + name_len).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = b
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(bad)?;
        zip64_fields(extra, field(24)? as usize, &mut size, &mut offset);
        if flags & 1 != 0 {
            return Err(format!("`{name}` is encrypted"));
        }
        if method != 0 {
            return Err(format!(
                "`{name}` is compressed (method {method}); torch.save writes uncompressed archives"
            ));
        }
        // The local header's own name and extra lengths (torch pads data with the extra field).
        if u32_at(b, offset) != Some(0x0403_4b50) {
            return Err(format!("`{name}`: bad local header"));
        }
        let local = |off| u16_at(b, offset + off).map(usize::from).ok_or_else(bad);
        let start = offset + 30 + local(26)? + local(28)?;
        let end = start.checked_add(size).ok_or_else(bad)?;
        if end > b.len() {
            return Err(format!(
                "`{name}` extends past the end of the file (truncated?)"
            ));
        }
        entries.insert(
            name,
            Entry {
                data: start..end,
                crc,
            },
        );
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// Replaces the 32-bit `size`/`offset` fields that are `0xffffffff` with their values from the
/// zip64 extra field (which lists uncompressed size, compressed size, offset, in that order,
/// only for the fields that overflowed).
fn zip64_fields(extra: &[u8], uncompressed: usize, size: &mut usize, offset: &mut usize) {
    let mut i = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, i), u16_at(extra, i + 2)) {
        let body = &extra[(i + 4).min(extra.len())..(i + 4 + usize::from(len)).min(extra.len())];
        if id == 1 {
            let mut vals = body.chunks_exact(8).map(|c| {
                usize::try_from(u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .unwrap_or(usize::MAX)
            });
            if uncompressed == 0xffff_ffff {
                vals.next();
            }
            if *size == 0xffff_ffff {
                *size = vals.next().unwrap_or(usize::MAX);
            }
            if *offset == 0xffff_ffff {
                *offset = vals.next().unwrap_or(usize::MAX);
            }
            return;
        }
        i += 4 + usize::from(len);
    }
}
