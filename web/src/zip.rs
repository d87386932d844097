//! A minimal zip writer: stored (uncompressed) entries, fixed timestamps, so the same files
//! give the same archive. PNGs are compressed already; JSON is small next to them.

/// Archive entries as `(path, bytes)`, in order.
pub fn write(entries: &[(String, &[u8])]) -> Result<Vec<u8>, String> {
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = u32::try_from(out.len()).map_err(|_| "the dataset is over 4 GB")?;
        let size = u32::try_from(data.len()).map_err(|_| format!("{name}: over 4 GB"))?;
        let crc = crc32fast::hash(data);
        let name_len = u16::try_from(name.len()).map_err(|_| format!("{name}: name too long"))?;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0x0800u16.to_le_bytes()); // UTF-8 names
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&DOS_TIME.to_le_bytes());
            v.extend_from_slice(&DOS_DATE.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&name_len.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk number
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(entries.len()).map_err(|_| "over 65535 files in one zip")?;
    let central_offset = u32::try_from(out.len()).map_err(|_| "the dataset is over 4 GB")?;
    let central_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// The files of `storage` as a zip, the files named in `first` leading (in that order), then
/// the rest by path.
pub fn from_storage(
    storage: maskforge_core::dataset::MemoryStorage,
    first: &[&str],
) -> Result<Vec<u8>, String> {
    let mut files = storage.into_files();
    let mut entries: Vec<(String, Vec<u8>)> = first
        .iter()
        .filter_map(|name| files.remove(*name).map(|bytes| (name.to_string(), bytes)))
        .collect();
    entries.extend(files);
    let entries: Vec<(String, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.clone(), b.as_slice()))
        .collect();
    write(&entries)
}
