//! The `.pth` reader on torch's own files (`tests/fixtures/pth/`, written by `pth_ref.py`) and
//! on archives built here: every refusal and malformation is an error naming the file.

use std::sync::Arc;

use safetensors::SafeTensors;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/pth/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str, bytes: Vec<u8>) -> Result<PthFile> {
    PthFile::parse(name, Arc::new(bytes))
}

fn error(name: &str, bytes: Vec<u8>) -> String {
    match parse(name, bytes) {
        Ok(_) => panic!("{name} parsed"),
        Err(e) => e.to_string(),
    }
}

/// Every tensor of `expected` is in `file` with the same dtype, shape and bytes, and nothing else.
fn assert_same_tensors(file: &PthFile, expected: &str) {
    let bytes = fixture(expected);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<&str> = file.keys().collect();
    keys.sort();
    let mut names = st.names();
    names.sort();
    assert_eq!(keys, names);
    for (key, view) in st.tensors() {
        let t = file.tensor(&key).unwrap();
        assert_eq!(
            (t.dtype, t.shape.as_slice()),
            (view.dtype(), view.shape()),
            "{key}"
        );
        assert_eq!(&*file.data(&key).unwrap().unwrap(), view.data(), "{key}");
    }
}

#[test]
fn detectron2_checkpoint_gives_its_model_tensors() {
    let file = parse("detectron2.pth", fixture("detectron2.pth")).unwrap();
    assert_eq!(file.entry(), Some("model"));
    assert!(file.skipped().is_empty());
    assert_same_tensors(&file, "detectron2.expected.safetensors");
    assert_eq!(
        file.keys().take(2).collect::<Vec<_>>(),
        [
            "backbone.bottom_up.stem.conv1.weight",
            "backbone.bottom_up.stem.conv1.norm.weight"
        ]
    );
    // Views are gathered; contiguous tensors are borrowed from the file.
    assert!(matches!(
        file.data("extra.base").unwrap(),
        Some(Cow::Borrowed(_))
    ));
    assert!(matches!(
        file.data("extra.transposed").unwrap(),
        Some(Cow::Owned(_))
    ));
    let t = file.read("extra.sliced").unwrap().unwrap();
    assert_eq!(t.shape, [2, 3]);
    assert_eq!(t.data, [1.0, 1.125, 1.25, 1.75, 1.875, 2.0]);
    let half = file.read("extra.half").unwrap().unwrap();
    assert_eq!(half.shape, [2, 3]);
    assert!(file.read("nope").unwrap().is_none());
    let err = file.read("extra.long").unwrap_err().to_string();
    assert!(
        err.contains("detectron2.pth") && err.contains("I64"),
        "{err}"
    );
}

#[test]
fn plain_legacy_and_float8_files() {
    let plain = parse("plain.pth", fixture("plain.pth")).unwrap();
    assert_eq!(plain.entry(), None);
    assert_same_tensors(&plain, "plain.expected.safetensors");
    let legacy = parse("legacy.pth", fixture("legacy.pth")).unwrap();
    assert_same_tensors(&legacy, "plain.expected.safetensors");
    let f8 = parse("float8.pth", fixture("float8.pth")).unwrap();
    assert_same_tensors(&f8, "float8.expected.safetensors");
}

#[test]
fn checkpoint_weights_reads_either_format() {
    let pth = checkpoint_weights("d.pth", Arc::new(fixture("detectron2.pth"))).unwrap();
    let st = checkpoint_weights(
        "d.safetensors",
        Arc::new(fixture("detectron2.expected.safetensors")),
    )
    .unwrap();
    for key in [
        "extra.transposed",
        "extra.bfloat16",
        "head.class_logits.weight",
    ] {
        let (a, b) = (
            pth.read(key).unwrap().unwrap(),
            st.read(key).unwrap().unwrap(),
        );
        assert_eq!((a.shape, a.data), (b.shape, b.data), "{key}");
    }
    assert_eq!(pth.origin(), "d.pth");
}

#[test]
fn code_in_the_pickle_is_refused() {
    let err = error("malicious.pth", fixture("malicious.pth"));
    assert!(
        err.starts_with("malicious.pth: ") && err.contains("refused pickle global `posix.system`"),
        "{err}"
    );
    assert!(err.contains("nothing was executed"), "{err}");
    // Outside the state dict too (protocol 4, STACK_GLOBAL).
    let err = error("m2.pth", fixture("malicious-trainer.pth"));
    assert!(
        err.contains("refused pickle global `builtins.exec`"),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let err = error("truncated.pth", fixture("truncated.pth"));
    assert!(
        err.starts_with("truncated.pth: ") && err.contains("truncated"),
        "{err}"
    );
    let err = error("garbage.pth", fixture("garbage.pth"));
    assert!(err.contains("not a PyTorch checkpoint"), "{err}");
    assert!(error("empty.pth", Vec::new()).contains("not a PyTorch checkpoint"));
    let err = error("x.pkl", b"\x80\x02}q\x00.".to_vec());
    assert!(err.contains("plain pickle"), "{err}");
}

#[test]
fn any_truncation_or_corruption_is_an_error_not_a_panic() {
    let good = fixture("detectron2.pth");
    for len in (0..good.len()).step_by(97) {
        assert!(parse("t", good[..len].to_vec()).is_err(), "{len}");
    }
    let legacy = fixture("legacy.pth");
    for len in 0..legacy.len() {
        assert!(parse("t", legacy[..len].to_vec()).is_err(), "{len}");
    }
    // Corrupt the pickle of an archive without CRCs, so the unpickler sees every byte flip.
    let pkl = {
        let entries = zip::entries(&good).unwrap();
        let e = &entries["detectron2/data.pkl"];
        good[e.data.clone()].to_vec()
    };
    let storages: Vec<(String, Vec<u8>)> = {
        let entries = zip::entries(&good).unwrap();
        (entries.iter())
            .filter(|(n, _)| n.starts_with("detectron2/data/"))
            .map(|(n, e)| {
                (
                    n["detectron2/".len()..].to_string(),
                    good[e.data.clone()].to_vec(),
                )
            })
            .collect()
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut p = pkl.clone();
        for _ in 0..1 + next() % 3 {
            let i = (next() as usize) % p.len();
            p[i] = next() as u8;
        }
        let mut files: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), p)];
        files.extend(
            storages
                .iter()
                .map(|(n, d)| (format!("archive/{n}"), d.clone())),
        );
        let bytes = archive(&files, false, false);
        if let Ok(file) = parse("fuzz.pth", bytes) {
            for key in file.keys().map(str::to_string).collect::<Vec<_>>() {
                let _ = file.data(&key);
            }
        }
    }
}

// --- Archives and pickles built here ---

/// A zip archive of stored `files`; with `crc` their CRC-32s, with `zip64` the zip64 forms
/// of sizes, offsets and the end record.
fn archive(files: &[(String, Vec<u8>)], crc: bool, zip64: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let sum = if crc { crc32fast::hash(data) } else { 0 };
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 8, 8, 0, 0, 0, 0, 0, 0]); // version, flags, method 0, time, date
        out.extend([0u8; 12]); // crc and sizes in the data descriptor, as torch does
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend([0x46, 0x42, 0, 0]); // torch's alignment padding field, here empty
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 8, 8, 0, 0, 0, 0, 0, 0]);
        central.extend(sum.to_le_bytes());
        let (size, off) = if zip64 {
            (u32::MAX, u32::MAX)
        } else {
            (data.len() as u32, offset)
        };
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend((if zip64 { 28u16 } else { 0 }).to_le_bytes());
        central.extend([0u8; 10]); // comment length, disk, attributes
        central.extend(off.to_le_bytes());
        central.extend(name.as_bytes());
        if zip64 {
            central.extend(1u16.to_le_bytes());
            central.extend(24u16.to_le_bytes());
            central.extend((data.len() as u64).to_le_bytes());
            central.extend((data.len() as u64).to_le_bytes());
            central.extend(u64::from(offset).to_le_bytes());
        }
    }
    let cd = out.len();
    out.extend(&central);
    let n = files.len();
    if zip64 {
        let end64 = out.len();
        out.extend(0x0606_4b50u32.to_le_bytes());
        out.extend(44u64.to_le_bytes());
        out.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend((n as u64).to_le_bytes());
        out.extend((n as u64).to_le_bytes());
        out.extend((central.len() as u64).to_le_bytes());
        out.extend((cd as u64).to_le_bytes());
        out.extend(0x0706_4b50u32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((end64 as u64).to_le_bytes());
        out.extend(1u32.to_le_bytes());
    }
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    let count = if zip64 { u16::MAX } else { n as u16 };
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend((if zip64 { u32::MAX } else { cd as u32 }).to_le_bytes());
    out.extend([0u8; 2]);
    out
}

/// Pickle fragments (protocol 2 opcodes).
fn s(text: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((text.len() as u32).to_le_bytes());
    v.extend(text.as_bytes());
    v
}

fn int(i: i32) -> Vec<u8> {
    let mut v = vec![b'J'];
    v.extend(i.to_le_bytes());
    v
}

fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![b'('];
    items.iter().for_each(|i| v.extend(i));
    v.push(b't');
    v
}

/// `_rebuild_tensor_v2` of storage `key` (`storage` elements of `torch.<ty>`).
fn tensor(ty: &str, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    let pid = tuple(&[
        s("storage"),
        global("torch", ty),
        s(key),
        s("cpu"),
        int(numel),
    ]);
    let mut storage = pid;
    storage.push(b'Q');
    let mut hooks = global("collections", "OrderedDict");
    hooks.extend([b')', b'R']);
    v.extend(tuple(&[
        storage,
        int(offset),
        tuple(&size.iter().map(|&d| int(d)).collect::<Vec<_>>()),
        tuple(&stride.iter().map(|&d| int(d)).collect::<Vec<_>>()),
        vec![0x89],
        hooks,
    ]));
    v.push(b'R');
    v
}

/// A whole pickle of a dict of `items` (key, value fragment).
fn dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0x80, 2, b'}', b'('];
    for (k, val) in items {
        v.extend(s(k));
        v.extend(val);
    }
    v.extend([b'u', b'.']);
    v
}

fn value(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut d = dict(items);
    d.drain(..2);
    d.pop();
    d
}

/// An archive `archive/` of pickle `pkl` and storages (key, little-endian f32 values).
fn checkpoint(pkl: Vec<u8>, storages: &[(&str, &[f32])], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files = vec![("archive/data.pkl".to_string(), pkl)];
    for (k, vals) in storages {
        let data = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        files.push((format!("archive/data/{k}"), data));
    }
    for (n, d) in extra {
        files.push((format!("archive/{n}"), d.to_vec()));
    }
    archive(&files, true, false)
}

#[test]
fn state_dict_entry_and_module_prefix() {
    let sd = value(&[
        ("module.a", tensor("FloatStorage", "0", 2, 0, &[2], &[1])),
        ("module.b", tensor("FloatStorage", "0", 2, 1, &[], &[])),
        ("module.note", s("not a tensor")),
    ]);
    let pkl = dict(&[("epoch", int(3)), ("state_dict", sd)]);
    let file = parse("l.ckpt", checkpoint(pkl, &[("0", &[1.0, 2.0])], &[])).unwrap();
    assert_eq!(file.entry(), Some("state_dict"));
    assert_eq!(file.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(file.skipped(), ["module.note"]);
    assert_eq!(file.read("b").unwrap().unwrap().data, [2.0]);
}

#[test]
fn zip64_big_endian_and_broadcast_views() {
    let pkl = dict(&[("w", tensor("FloatStorage", "0", 2, 0, &[3, 2], &[0, 1]))]);
    let data: Vec<u8> = [1.0f32, -2.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let files = vec![
        ("archive/data.pkl".to_string(), pkl),
        ("archive/byteorder".to_string(), b"big".to_vec()),
        ("archive/data/0".to_string(), data),
    ];
    let file = parse("be.pth", archive(&files, true, true)).unwrap();
    let t = file.read("w").unwrap().unwrap();
    assert_eq!(
        (t.shape, t.data),
        (vec![3, 2], vec![1.0, -2.0, 1.0, -2.0, 1.0, -2.0])
    );
}

#[test]
fn malformed_archives_name_the_problem() {
    let ok = dict(&[("w", tensor("FloatStorage", "0", 2, 0, &[2], &[1]))]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A view beyond its storage.
        (
            checkpoint(
                dict(&[("w", tensor("FloatStorage", "0", 2, 1, &[2], &[1]))]),
                &[("0", &[1.0, 2.0])],
                &[],
            ),
            "lies outside storage `0`",
        ),
        // A storage record shorter than the pickle says.
        (
            checkpoint(ok.clone(), &[("0", &[1.0])], &[]),
            "storage `0` holds 4 bytes, 8 expected",
        ),
        (
            checkpoint(ok.clone(), &[], &[]),
            "storage `0` is not in the file",
        ),
        (
            checkpoint(dict(&[("n", int(1))]), &[], &[]),
            "no tensors found (the checkpoint holds: n (int))",
        ),
        (
            checkpoint(ok.clone(), &[("0", &[1.0, 2.0])], &[("constants.pkl", b"")]),
            "TorchScript",
        ),
        (
            checkpoint(
                ok.clone(),
                &[("0", &[1.0, 2.0])],
                &[("byteorder", b"middle")],
            ),
            "unknown byteorder",
        ),
        (
            checkpoint(
                dict(&[("w", global("torch", "ComplexFloatStorage"))]),
                &[],
                &[],
            ),
            "complex or quantized",
        ),
        // Refused opcodes: INST (calls a class by name), text INT, PERSID.
        (
            checkpoint(b"\x80\x02(iposix\nsystem\n.".to_vec(), &[], &[]),
            "refused pickle opcode 0x69",
        ),
        (
            checkpoint(b"I1\n.".to_vec(), &[], &[]),
            "refused pickle opcode 0x49",
        ),
        (
            checkpoint(
                [&[0x80, 4][..], &s("builtins"), &s("eval"), &[0x93, b'.']].concat(),
                &[],
                &[],
            ),
            "refused pickle global `builtins.eval`",
        ),
        (
            checkpoint(global("subprocess", "Popen"), &[], &[]),
            "refused pickle global `subprocess.Popen`",
        ),
        (
            checkpoint(b"\x80\x02h\x07.".to_vec(), &[], &[]),
            "memo entry 7 missing",
        ),
        (
            checkpoint(b"\x80\x02Ns.".to_vec(), &[], &[]),
            "stack underflow",
        ),
        (
            checkpoint(b"\x80\x02N".to_vec(), &[], &[]),
            "pickle ends early",
        ),
        (
            checkpoint(b"\x80\x02N.".to_vec(), &[], &[]),
            "a None, not a dict",
        ),
    ];
    for (bytes, needle) in cases {
        let err = error("bad.pth", bytes);
        assert!(
            err.starts_with("bad.pth: ") && err.contains(needle),
            "{needle}: {err}"
        );
    }
    // A flipped data byte fails the CRC when read.
    let mut bytes = checkpoint(ok.clone(), &[("0", &[1.0, 2.0])], &[]);
    let at = bytes
        .windows(4)
        .position(|w| w == 1.0f32.to_le_bytes())
        .unwrap();
    bytes[at] ^= 1;
    let file = parse("crc.pth", bytes).unwrap();
    let err = file.read("w").unwrap_err().to_string();
    assert!(
        err.contains("crc.pth: tensor `w`: `storage 0` is corrupt"),
        "{err}"
    );
    // Compressed entries are not torch's.
    let mut bytes = checkpoint(ok, &[("0", &[1.0, 2.0])], &[]);
    let cd = bytes
        .windows(4)
        .position(|w| w == 0x0201_4b50u32.to_le_bytes())
        .unwrap();
    bytes[cd + 10] = 8;
    assert!(error("z.pth", bytes).contains("is compressed (method 8)"));
}
