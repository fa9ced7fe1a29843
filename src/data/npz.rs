//! Synthetic DDPM images stored as NumPy `.npz` archives (docs/reproduction.md §3.5): DDPM-6M is
//! CIFAR-5m, distributed as six `.npz` parts, and the later DDPM papers (Gowal et al., Wang et al.)
//! ship their 1M-50M generated sets the same way.
//!
//! An `.npz` is a zip archive of `.npy` arrays: `image.npy` (`uint8`, `N×32×32×3`, C order, HWC)
//! and `label.npy` (any integer dtype, `N` values in `0..classes`). CIFAR-5m names them `X.npy`
//! and `Y.npy`; both spellings are accepted.
//!
//! - [`NpzImages`]: random access when the image member is *stored* (`np.savez`): the member is
//!   memory-mapped at its data offset, so a 5M-image part (15 GB) is never loaded into RAM;
//!   the labels (small) are read into memory.
//! - [`NpzStream`]: a sequential reader in chunks of bounded size, for *deflated* members
//!   (`np.savez_compressed`, which cannot be random-accessed) as well as stored ones.
//! - [`load_npz`]: everything into an [`ImageSet`].
//! - [`open_npz_source`]: the mapping when the file allows it, memory otherwise (what a run's
//!   `data.synthetic` uses).
//! - [`ConcatSource`]: several [`ImageSource`]s (the CIFAR-5m parts) chained into one.
//!
//! The `.npy` header is parsed here (magic `\x93NUMPY`, versions 1.0/2.0/3.0, the header dict
//! with `descr`, `fortran_order`, `shape`). Nothing is allocated from a header's claim before
//! it is checked against the bytes actually present: the header length is capped, the shape
//! product uses checked arithmetic, a member's declared size must match the header, and stored
//! members must lie inside the file. A lying or truncated file is an error, never a panic or an
//! out-of-memory abort.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;
use memmap2::{Mmap, MmapOptions};
use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::{DataError, ImageSet, ImageShape, ImageSource, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};

/// Number of classes of the CIFAR-10 synthetic sets (DDPM-6M / CIFAR-5m, TI-500K).
pub const DEFAULT_CLASSES: usize = 10;

/// Longest `.npy` header dict accepted, in bytes (NumPy itself refuses more than 10,000).
pub const MAX_NPY_HEADER: usize = 65_536;

/// `\x93NUMPY`, the `.npy` magic string.
const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Member names accepted for the images (`image.npy`, CIFAR-5m's `X.npy`).
const IMAGE_KEYS: [&str; 2] = ["image", "X"];
/// Member names accepted for the labels (`label.npy`, CIFAR-5m's `Y.npy`).
const LABEL_KEYS: [&str; 2] = ["label", "Y"];

/// Images decoded per internal read when no chunk size is given (12 MiB of pixels).
const LOAD_CHUNK: usize = 4096;

// ------------------------------------------------------------------------------------------------
// .npy headers

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version `(major, minor)`: 1.0, 2.0 or 3.0.
    pub version: (u8, u8),
    /// The dtype string, e.g. `|u1`, `<i8`.
    pub descr: String,
    /// True for Fortran (column-major) order, which is refused for images.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<u64>,
    /// Bytes before the array data: magic, version, length field and header dict.
    pub data_offset: u64,
}

impl NpyHeader {
    /// Number of elements (product of the shape), `None` on overflow.
    pub fn elements(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    fn shape_str(&self) -> String {
        shape_str(&self.shape)
    }
}

fn shape_str(shape: &[u64]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// Reads and parses a `.npy` header from `r`, which holds a member of `member_size` bytes.
/// `origin` and `member` name the file and member in errors.
pub fn read_npy_header<R: Read>(
    r: &mut R,
    member_size: u64,
    origin: &Path,
    member: &str,
) -> Result<NpyHeader, DataError> {
    let size_err = |expected: u64| DataError::Size {
        path: origin.to_path_buf(),
        what: format!("{member} (.npy header)"),
        expected,
        actual: member_size,
    };
    if member_size < 10 {
        return Err(size_err(10));
    }
    let mut pre = [0u8; 8];
    read_exact(r, &mut pre, origin, member, 8, member_size)?;
    if &pre[..6] != NPY_MAGIC {
        return Err(DataError::BadMagic {
            path: origin.join(member),
            found: u32::from_be_bytes([pre[0], pre[1], pre[2], pre[3]]),
            expected: u32::from_be_bytes([NPY_MAGIC[0], NPY_MAGIC[1], NPY_MAGIC[2], NPY_MAGIC[3]]),
        });
    }
    let version = (pre[6], pre[7]);
    let (len_bytes, utf8) = match version {
        (1, 0) => (2usize, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        (a, b) => {
            return Err(DataError::format(
                origin,
                format!("{member}: unsupported .npy version {a}.{b} (expected 1.0, 2.0 or 3.0)"),
            ))
        }
    };
    let mut lb = [0u8; 4];
    read_exact(r, &mut lb[..len_bytes], origin, member, 8, member_size)?;
    let header_len = u32::from_le_bytes(lb) as usize;
    if header_len > MAX_NPY_HEADER {
        return Err(DataError::format(
            origin,
            format!(
                "{member}: .npy header of {header_len} bytes (at most {MAX_NPY_HEADER} accepted)"
            ),
        ));
    }
    let data_offset = (8 + len_bytes + header_len) as u64;
    if data_offset > member_size {
        return Err(size_err(data_offset));
    }
    let mut dict = vec![0u8; header_len];
    read_exact(
        r,
        &mut dict,
        origin,
        member,
        8 + len_bytes as u64,
        member_size,
    )?;
    let text: String = if utf8 {
        String::from_utf8(dict)
            .map_err(|_| DataError::format(origin, format!("{member}: .npy header is not UTF-8")))?
    } else {
        // Latin-1: every byte is the code point of the same value.
        dict.iter().map(|&b| b as char).collect()
    };
    let (descr, fortran_order, shape) = parse_header_dict(&text).map_err(|e| {
        DataError::format(origin, format!("{member}: bad .npy header ({e}): {text:?}"))
    })?;
    Ok(NpyHeader {
        version,
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

fn read_exact<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    origin: &Path,
    member: &str,
    already: u64,
    member_size: u64,
) -> Result<(), DataError> {
    r.read_exact(buf)
        .map_err(|e| io_err(e, origin, member, already + buf.len() as u64, member_size))
}

/// Maps an i/o error reading `member`: end of data → `Size`, corrupt compressed data → `Format`.
fn io_err(e: std::io::Error, origin: &Path, member: &str, expected: u64, actual: u64) -> DataError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::UnexpectedEof => DataError::Size {
            path: origin.to_path_buf(),
            what: format!("{member} (cut short)"),
            expected,
            actual,
        },
        ErrorKind::InvalidData | ErrorKind::InvalidInput => {
            DataError::format(origin, format!("{member}: corrupt compressed data: {e}"))
        }
        _ => DataError::io(origin, e),
    }
}

/// A value of the header dict.
#[derive(Debug)]
enum PyValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// Parses `{'descr': '<i8', 'fortran_order': False, 'shape': (5, 32, 32, 3), }`.
fn parse_header_dict(text: &str) -> Result<(String, bool, Vec<u64>), String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = p.value()?;
        match (key.as_str(), value) {
            ("descr", PyValue::Str(s)) => descr = Some(s),
            ("fortran_order", PyValue::Bool(b)) => fortran = Some(b),
            ("shape", PyValue::Tuple(t)) => shape = Some(t),
            (k @ ("descr" | "fortran_order" | "shape"), v) => {
                return Err(format!("unexpected value {v:?} for '{k}'"))
            }
            (k, _) => return Err(format!("unexpected key '{k}'")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err("trailing characters after the dict".into());
    }
    Ok((
        descr.ok_or("no 'descr'")?,
        fortran.ok_or("no 'fortran_order'")?,
        shape.ok_or("no 'shape'")?,
    ))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            if self.s[self.i] == b'\\' {
                return Err("escapes in strings are not supported".into());
            }
            self.i += 1;
        }
        if self.i == self.s.len() {
            return Err("unterminated string".into());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }
    fn word(&mut self, w: &str) -> bool {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            true
        } else {
            false
        }
    }
    fn int(&mut self) -> Result<u64, String> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("expected a non-negative integer at byte {start}"));
        }
        // 'L' suffix of Python 2 longs
        self.eat(b'L');
        std::str::from_utf8(&self.s[start..self.i])
            .unwrap_or("")
            .trim_end_matches('L')
            .parse::<u64>()
            .map_err(|e| format!("bad dimension: {e}"))
    }
    fn value(&mut self) -> Result<PyValue, String> {
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(PyValue::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    self.ws();
                    if self.eat(b')') {
                        break;
                    }
                    if dims.len() >= 32 {
                        return Err("more than 32 dimensions".into());
                    }
                    dims.push(self.int()?);
                    self.ws();
                    if !self.eat(b',') {
                        self.ws();
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(PyValue::Tuple(dims))
            }
            _ if self.word("True") => Ok(PyValue::Bool(true)),
            _ if self.word("False") => Ok(PyValue::Bool(false)),
            _ => Err(format!("unsupported value at byte {}", self.i)),
        }
    }
}

/// An integer dtype of the labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IntType {
    bytes: usize,
    signed: bool,
    big_endian: bool,
}

impl IntType {
    fn parse(descr: &str) -> Option<Self> {
        let (order, code) = match descr.as_bytes().first()? {
            b'<' | b'|' | b'=' => (false, &descr[1..]),
            b'>' => (true, &descr[1..]),
            _ => (false, descr),
        };
        let (signed, bytes) = match code {
            "u1" | "B" => (false, 1),
            "i1" | "b" => (true, 1),
            "u2" => (false, 2),
            "i2" => (true, 2),
            "u4" => (false, 4),
            "i4" => (true, 4),
            "u8" => (false, 8),
            "i8" => (true, 8),
            _ => return None,
        };
        Some(IntType {
            bytes,
            signed,
            big_endian: order && bytes > 1,
        })
    }

    /// The value of one element (`bytes` long).
    fn decode(&self, b: &[u8]) -> i128 {
        let mut raw = [0u8; 8];
        if self.big_endian {
            for (k, &v) in b.iter().rev().enumerate() {
                raw[k] = v;
            }
        } else {
            raw[..self.bytes].copy_from_slice(b);
        }
        let u = u64::from_le_bytes(raw);
        if self.signed {
            let shift = 64 - 8 * self.bytes as u32;
            (((u << shift) as i64) >> shift) as i128
        } else {
            u as i128
        }
    }
}

fn is_u8_descr(descr: &str) -> bool {
    matches!(descr, "|u1" | "<u1" | ">u1" | "=u1" | "u1" | "B" | "|B")
}

// ------------------------------------------------------------------------------------------------
// archive members

/// Where a member's bytes are in the `.npz` file.
#[derive(Clone, Debug)]
struct Member {
    /// Member file name (`image.npy`).
    name: String,
    deflated: bool,
    data_start: u64,
    compressed_size: u64,
    size: u64,
    crc32: u32,
}

/// The two members of an `.npz`, located and checked against the file's length.
struct Archive {
    path: PathBuf,
    image: Member,
    label: Member,
}

fn zip_err(path: &Path, e: ZipError) -> DataError {
    match e {
        ZipError::Io(e) => DataError::io(path, e),
        e => DataError::format(path, format!("not a readable .npz (zip) archive: {e}")),
    }
}

impl Archive {
    fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err(path, e))?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let find = |keys: &[&str]| -> Option<String> {
            keys.iter().find_map(|k| {
                let want = format!("{k}.npy");
                names.iter().find(|n| **n == want).cloned()
            })
        };
        let keys_found = || {
            let mut k: Vec<&str> = names
                .iter()
                .map(|n| n.strip_suffix(".npy").unwrap_or(n))
                .collect();
            k.sort_unstable();
            if k.is_empty() {
                "none".to_string()
            } else {
                k.join(", ")
            }
        };
        let image = find(&IMAGE_KEYS).ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "no `image` array (or CIFAR-5m's `X`); keys found: {}",
                    keys_found()
                ),
            )
        })?;
        let label = find(&LABEL_KEYS).ok_or_else(|| {
            DataError::format(
                path,
                format!(
                    "no `label` array (or CIFAR-5m's `Y`); keys found: {}",
                    keys_found()
                ),
            )
        })?;
        let mut member = |name: &str| -> Result<Member, DataError> {
            let f = zip.by_name(name).map_err(|e| zip_err(path, e))?;
            if f.encrypted() {
                return Err(DataError::format(path, format!("{name} is encrypted")));
            }
            let deflated = match f.compression() {
                CompressionMethod::Stored => false,
                CompressionMethod::Deflated => true,
                m => {
                    return Err(DataError::format(
                        path,
                        format!(
                            "{name} is compressed with {m}; only stored and deflate are supported"
                        ),
                    ))
                }
            };
            let m = Member {
                name: name.to_string(),
                deflated,
                data_start: f.data_start(),
                compressed_size: f.compressed_size(),
                size: f.size(),
                crc32: f.crc32(),
            };
            let end = m.data_start.checked_add(m.compressed_size);
            if end.map_or(true, |end| end > file_len) {
                return Err(DataError::Size {
                    path: path.to_path_buf(),
                    what: format!("{name} (member data past the end of the file)"),
                    expected: end.unwrap_or(u64::MAX),
                    actual: file_len,
                });
            }
            if !deflated && m.compressed_size != m.size {
                return Err(DataError::format(
                    path,
                    format!(
                        "{name}: stored member of {} bytes declares {} uncompressed bytes",
                        m.compressed_size, m.size
                    ),
                ));
            }
            Ok(m)
        };
        let image = member(&image)?;
        let label = member(&label)?;
        Ok(Archive {
            path: path.to_path_buf(),
            image,
            label,
        })
    }

    /// A reader of `m`'s uncompressed bytes.
    fn reader(&self, m: &Member) -> Result<MemberReader, DataError> {
        let mut file = File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        file.seek(SeekFrom::Start(m.data_start))
            .map_err(|e| DataError::io(&self.path, e))?;
        let raw = BufReader::with_capacity(1 << 16, file).take(m.compressed_size);
        let inner = if m.deflated {
            Inner::Deflated(Box::new(DeflateDecoder::new(raw)))
        } else {
            Inner::Stored(raw)
        };
        Ok(MemberReader {
            inner,
            crc: crc32fast::Hasher::new(),
            position: 0,
            member: m.clone(),
            path: self.path.clone(),
        })
    }
}

enum Inner {
    Stored(Take<BufReader<File>>),
    Deflated(Box<DeflateDecoder<Take<BufReader<File>>>>),
}

/// Uncompressed bytes of one member, with their CRC-32 computed on the way.
struct MemberReader {
    inner: Inner,
    crc: crc32fast::Hasher,
    /// Uncompressed bytes read so far.
    position: u64,
    member: Member,
    path: PathBuf,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            Inner::Stored(r) => r.read(buf)?,
            Inner::Deflated(r) => r.read(buf)?,
        };
        self.crc.update(&buf[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl MemberReader {
    /// Fills `buf` or fails with `Size` (cut short) / `Format` (corrupt) / `Io`.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), DataError> {
        let expected = self.position + buf.len() as u64;
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(DataError::Size {
                        path: self.path.clone(),
                        what: format!("{} (data cut short)", self.member.name),
                        expected: expected.max(self.member.size),
                        actual: self.position,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(io_err(
                        e,
                        &self.path,
                        &self.member.name,
                        expected,
                        self.position,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Checks that the member ends here and that its CRC-32 is the declared one.
    fn finish(mut self) -> Result<(), DataError> {
        let mut extra = [0u8; 4096];
        let mut trailing = 0u64;
        loop {
            match self.read(&mut extra) {
                Ok(0) => break,
                Ok(n) => {
                    trailing += n as u64;
                    if trailing > 1 << 20 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(io_err(
                        e,
                        &self.path,
                        &self.member.name,
                        self.position,
                        self.position,
                    ))
                }
            }
        }
        if trailing > 0 {
            return Err(DataError::Size {
                path: self.path.clone(),
                what: format!(
                    "{} (bytes after the array its header declares)",
                    self.member.name
                ),
                expected: self.position - trailing,
                actual: self.position,
            });
        }
        let crc = self.crc.finalize();
        if crc != self.member.crc32 {
            return Err(DataError::format(
                &self.path,
                format!(
                    "{}: CRC-32 {crc:#010x}, archive declares {:#010x} (corrupt member)",
                    self.member.name, self.member.crc32
                ),
            ));
        }
        Ok(())
    }
}

/// Reads the image member's header and checks dtype, order and shape; returns the header and
/// the number of images, whose bytes the member's declared size must hold exactly.
fn image_header(
    path: &Path,
    m: &Member,
    r: &mut MemberReader,
) -> Result<(NpyHeader, usize), DataError> {
    let h = read_npy_header(r, m.size, path, &m.name)?;
    if !is_u8_descr(&h.descr) {
        return Err(DataError::format(
            path,
            format!(
                "{}: dtype '{}', expected uint8 ('|u1') images",
                m.name, h.descr
            ),
        ));
    }
    let expected_tail = [IMAGE_SIZE as u64, IMAGE_SIZE as u64, CHANNELS as u64];
    if h.shape.len() != 4 || h.shape[1..] != expected_tail {
        return Err(DataError::format(
            path,
            format!(
                "{}: shape {}, expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}, {CHANNELS}) \
                 (32×32 RGB, channels last)",
                m.name,
                h.shape_str()
            ),
        ));
    }
    if h.fortran_order {
        return Err(DataError::format(
            path,
            format!("{}: fortran_order True, expected C order", m.name),
        ));
    }
    let n = h.shape[0];
    let bytes = n
        .checked_mul(IMAGE_BYTES as u64)
        .and_then(|b| b.checked_add(h.data_offset))
        .ok_or_else(|| {
            DataError::format(
                path,
                format!("{}: shape {} overflows", m.name, h.shape_str()),
            )
        })?;
    if bytes != m.size {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            what: format!("{} (header declares {n} images)", m.name),
            expected: bytes,
            actual: m.size,
        });
    }
    let n = usize::try_from(n)
        .map_err(|_| DataError::format(path, format!("{}: {n} images", m.name)))?;
    Ok((h, n))
}

/// Reads the label member whole (checking its size first) and checks every label.
fn read_labels(archive: &Archive, classes: usize) -> Result<Vec<u16>, DataError> {
    let path = archive.path.as_path();
    let m = &archive.label;
    let mut r = archive.reader(m)?;
    let h = read_npy_header(&mut r, m.size, path, &m.name)?;
    let ty = IntType::parse(&h.descr).ok_or_else(|| {
        DataError::format(
            path,
            format!(
                "{}: dtype '{}', expected integer labels ('|u1', '<i8', '<i4', ...)",
                m.name, h.descr
            ),
        )
    })?;
    let n = match h.shape.as_slice() {
        [n] | [n, 1] => *n,
        _ => {
            return Err(DataError::format(
                path,
                format!("{}: shape {}, expected (N,)", m.name, h.shape_str()),
            ))
        }
    };
    let bytes = n
        .checked_mul(ty.bytes as u64)
        .and_then(|b| b.checked_add(h.data_offset))
        .ok_or_else(|| {
            DataError::format(
                path,
                format!("{}: shape {} overflows", m.name, h.shape_str()),
            )
        })?;
    if bytes != m.size {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            what: format!("{} (header declares {n} labels)", m.name),
            expected: bytes,
            actual: m.size,
        });
    }
    let n = usize::try_from(n)
        .map_err(|_| DataError::format(path, format!("{}: {n} labels", m.name)))?;
    // The declared size may still lie for a deflated member: grow with the bytes that arrive.
    let mut labels = Vec::with_capacity(n.min(1 << 20));
    let mut buf = vec![0u8; ty.bytes * 8192];
    while labels.len() < n {
        let k = (n - labels.len()).min(8192);
        let chunk = &mut buf[..k * ty.bytes];
        r.fill(chunk)?;
        for b in chunk.chunks_exact(ty.bytes) {
            let v = ty.decode(b);
            let index = labels.len();
            if v < 0 {
                return Err(DataError::format(
                    path,
                    format!("{}: negative label {v} at index {index}", m.name),
                ));
            }
            if v >= classes as i128 {
                return Err(DataError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    index,
                    label: u64::try_from(v).unwrap_or(u64::MAX),
                    classes,
                });
            }
            labels.push(v as u16);
        }
    }
    r.finish()?;
    Ok(labels)
}

fn check_classes(classes: usize) -> Result<(), DataError> {
    if classes == 0 || classes > u16::MAX as usize + 1 {
        return Err(DataError::Invalid {
            what: "classes".into(),
            reason: format!("{classes}: must be in 1..=65536"),
        });
    }
    Ok(())
}

fn count_check(path: &Path, images: usize, labels: usize) -> Result<(), DataError> {
    if images != labels {
        return Err(DataError::CountMismatch {
            path: path.to_path_buf(),
            images,
            labels,
        });
    }
    Ok(())
}

fn index_err(i: usize, len: usize) -> DataError {
    DataError::Invalid {
        what: "index".into(),
        reason: format!("{i} >= {len} images"),
    }
}

fn out_err(len: usize) -> DataError {
    DataError::Invalid {
        what: "output buffer".into(),
        reason: format!("{len} bytes, expected {IMAGE_BYTES}"),
    }
}

// ------------------------------------------------------------------------------------------------
// NpzImages: random access, memory-mapped

/// Random access to an `.npz` whose image member is stored (`np.savez`): the pixels are
/// memory-mapped, the labels held in memory (2 bytes each).
///
/// The mapping assumes the file is not modified or truncated while it is open (as every
/// memory-mapped reader does); the CRC of the mapped member is not checked (that would read it
/// all), but its size is checked against the header and the file.
#[derive(Debug)]
pub struct NpzImages {
    path: PathBuf,
    classes: usize,
    labels: Vec<u16>,
    /// The image data (`len · IMAGE_BYTES` bytes); `None` for an empty set.
    map: Option<Mmap>,
}

impl NpzImages {
    /// Opens `path`; labels must lie in `0..classes` ([`DEFAULT_CLASSES`] for CIFAR-10 sets).
    /// A deflated image member (`np.savez_compressed`) is a `Format` error pointing to
    /// [`NpzStream`] / [`load_npz`].
    pub fn open(path: impl AsRef<Path>, classes: usize) -> Result<Self, DataError> {
        let path = path.as_ref();
        check_classes(classes)?;
        let archive = Archive::open(path)?;
        let m = &archive.image;
        if m.deflated {
            return Err(DataError::format(
                path,
                format!(
                    "{} is deflate-compressed (np.savez_compressed) and cannot be accessed at \
                     random; read it with NpzStream or load_npz, or re-save it with np.savez",
                    m.name
                ),
            ));
        }
        let mut r = archive.reader(m)?;
        let (h, n) = image_header(path, m, &mut r)?;
        drop(r);
        let labels = read_labels(&archive, classes)?;
        count_check(path, n, labels.len())?;
        let map = if n == 0 {
            None
        } else {
            let file = File::open(path).map_err(|e| DataError::io(path, e))?;
            // Checked in `Archive::open`: data_start + compressed_size <= file length, and in
            // `image_header`: data_offset + n · IMAGE_BYTES == size == compressed_size.
            let offset = m.data_start + h.data_offset;
            // SAFETY: the mapping is read-only and lies inside the file (checked above); like any
            // memory map it assumes no other process truncates the file while it is mapped.
            let map = unsafe {
                MmapOptions::new()
                    .offset(offset)
                    .len(n * IMAGE_BYTES)
                    .map(&file)
            }
            .map_err(|e| DataError::io(path, e))?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Random);
            Some(map)
        };
        Ok(NpzImages {
            path: path.to_path_buf(),
            classes,
            labels,
            map,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All labels.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }

    /// Image `i` (HWC bytes, borrowed from the mapping), `None` if `i >= len()`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        if i >= self.labels.len() {
            return None;
        }
        let map = self.map.as_ref()?;
        map.get(i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES)
    }

    /// Copies everything into an [`ImageSet`].
    pub fn to_image_set(&self) -> Result<ImageSet, DataError> {
        let pixels = self.map.as_ref().map_or_else(Vec::new, |m| m.to_vec());
        ImageSet::new(
            set_name(&self.path),
            self.classes,
            pixels,
            self.labels.clone(),
            &self.path,
        )
    }
}

impl ImageSource for NpzImages {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn shape(&self) -> ImageShape {
        ImageShape::CIFAR
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        if out.len() != IMAGE_BYTES {
            return Err(out_err(out.len()));
        }
        let img = self.image(i).ok_or_else(|| index_err(i, self.len()))?;
        out.copy_from_slice(img);
        Ok(self.labels[i])
    }
}

fn set_name(path: &Path) -> String {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    format!("synthetic {file}")
}

// ------------------------------------------------------------------------------------------------
// NpzStream: sequential, bounded memory

/// Sequential reader of an `.npz` (deflated or stored members) yielding chunks of at most
/// `chunk` images: `(pixels, labels)` with `pixels.len() == labels.len() · IMAGE_BYTES`.
/// Memory: the labels (2 bytes per image) plus one chunk. The image member's length and CRC-32
/// are checked when its last chunk is read; a failure is yielded as the last item.
pub struct NpzStream {
    path: PathBuf,
    classes: usize,
    chunk: usize,
    labels: Vec<u16>,
    next: usize,
    reader: Option<MemberReader>,
}

impl std::fmt::Debug for NpzStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpzStream")
            .field("path", &self.path)
            .field("classes", &self.classes)
            .field("len", &self.labels.len())
            .field("chunk", &self.chunk)
            .field("next", &self.next)
            .finish()
    }
}

impl NpzStream {
    /// Opens `path` (labels in `0..classes`), to be read `chunk` images at a time (`chunk ≥ 1`).
    /// The headers, declared sizes and all labels are checked here.
    pub fn open(path: impl AsRef<Path>, classes: usize, chunk: usize) -> Result<Self, DataError> {
        let path = path.as_ref();
        check_classes(classes)?;
        if chunk == 0 {
            return Err(DataError::Invalid {
                what: "chunk".into(),
                reason: "0 images per chunk".into(),
            });
        }
        let archive = Archive::open(path)?;
        let mut reader = archive.reader(&archive.image)?;
        let (_, n) = image_header(path, &archive.image, &mut reader)?;
        let labels = read_labels(&archive, classes)?;
        count_check(path, n, labels.len())?;
        Ok(NpzStream {
            path: path.to_path_buf(),
            classes,
            chunk,
            labels,
            next: 0,
            reader: Some(reader),
        })
    }

    /// Number of images (as the headers declare and the labels confirm).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All labels.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for NpzStream {
    type Item = Result<(Vec<u8>, Vec<u16>), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut reader = self.reader.take()?;
        let n = self.labels.len();
        if self.next == n {
            return match reader.finish() {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        let k = self.chunk.min(n - self.next);
        let mut pixels = vec![0u8; k * IMAGE_BYTES];
        if let Err(e) = reader.fill(&mut pixels) {
            return Some(Err(e));
        }
        let labels = self.labels[self.next..self.next + k].to_vec();
        self.next += k;
        if self.next == n {
            if let Err(e) = reader.finish() {
                return Some(Err(e));
            }
        } else {
            self.reader = Some(reader);
        }
        Some(Ok((pixels, labels)))
    }
}

impl std::iter::FusedIterator for NpzStream {}

/// Reads a whole `.npz` (stored or deflated) into memory, checking the declared sizes against
/// the real ones, the CRC-32 of the image member and every label (`0..classes`).
pub fn load_npz(path: impl AsRef<Path>, classes: usize) -> Result<ImageSet, DataError> {
    let path = path.as_ref();
    let stream = NpzStream::open(path, classes, LOAD_CHUNK)?;
    let labels = stream.labels.clone();
    // The declared count is not trusted for the allocation: grow with the data that arrives.
    let mut pixels = Vec::with_capacity(labels.len().min(LOAD_CHUNK) * IMAGE_BYTES);
    for chunk in stream {
        let (p, _) = chunk?;
        pixels.extend_from_slice(&p);
    }
    ImageSet::new(set_name(path), classes, pixels, labels, path)
}

/// Opens an `.npz` as an [`ImageSource`] whichever way it is stored: a *stored* image member
/// (`np.savez`) is memory-mapped ([`NpzImages`], any size); a *deflated* one
/// (`np.savez_compressed`) cannot be read at random, so it is decompressed into memory
/// ([`load_npz`], `N × 3,072` bytes: 3 GB for a million images). The `bool` says which
/// (`true`: in memory).
pub fn open_npz_source(
    path: impl AsRef<Path>,
    classes: usize,
) -> Result<(Box<dyn ImageSource>, bool), DataError> {
    let path = path.as_ref();
    check_classes(classes)?;
    if Archive::open(path)?.image.deflated {
        Ok((Box::new(load_npz(path, classes)?), true))
    } else {
        Ok((Box::new(NpzImages::open(path, classes)?), false))
    }
}

// ------------------------------------------------------------------------------------------------
// ConcatSource

/// Several [`ImageSource`]s read as one (the six CIFAR-5m parts, several `.npz` files): image
/// `i` is image `i - start` of the part holding it. All parts must have the same classes.
pub struct ConcatSource {
    parts: Vec<Box<dyn ImageSource>>,
    /// `starts[k]` = index of part `k`'s first image; `starts[parts.len()]` = total.
    starts: Vec<usize>,
    classes: usize,
}

impl std::fmt::Debug for ConcatSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcatSource")
            .field("starts", &self.starts)
            .field("classes", &self.classes)
            .finish()
    }
}

impl ConcatSource {
    /// Chains `parts` in order; they must be at least one and agree on the number of classes and
    /// the image shape.
    pub fn new(parts: Vec<Box<dyn ImageSource>>) -> Result<Self, DataError> {
        let classes = parts
            .first()
            .ok_or_else(|| DataError::Invalid {
                what: "parts".into(),
                reason: "no sources to concatenate".into(),
            })?
            .classes();
        let mut starts = Vec::with_capacity(parts.len() + 1);
        let mut total = 0usize;
        for (k, p) in parts.iter().enumerate() {
            if p.classes() != classes {
                return Err(DataError::Invalid {
                    what: "parts".into(),
                    reason: format!("part {k} has {} classes, part 0 has {classes}", p.classes()),
                });
            }
            if p.shape() != parts[0].shape() {
                return Err(DataError::Invalid {
                    what: "parts".into(),
                    reason: format!(
                        "part {k} holds {} images, part 0 {}",
                        p.shape(),
                        parts[0].shape()
                    ),
                });
            }
            starts.push(total);
            total = total
                .checked_add(p.len())
                .ok_or_else(|| DataError::Invalid {
                    what: "parts".into(),
                    reason: "total length overflows".into(),
                })?;
        }
        starts.push(total);
        Ok(ConcatSource {
            parts,
            starts,
            classes,
        })
    }

    /// Opens several `.npz` files (stored members) with [`NpzImages::open`] and chains them.
    pub fn open_npz<P: AsRef<Path>>(paths: &[P], classes: usize) -> Result<Self, DataError> {
        let parts = paths
            .iter()
            .map(|p| NpzImages::open(p, classes).map(|s| Box::new(s) as Box<dyn ImageSource>))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parts)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// `(part, index within the part)` of image `i`, `None` if `i >= len()`.
    pub fn locate(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.len() {
            return None;
        }
        // first start > i, minus one: the last part starting at or before i (empty parts
        // share their start with the next one and are skipped this way)
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        Some((k, i - self.starts[k]))
    }
}

impl ImageSource for ConcatSource {
    fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn shape(&self) -> ImageShape {
        self.parts[0].shape()
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        let (k, j) = self.locate(i).ok_or_else(|| index_err(i, self.len()))?;
        self.parts[k].read(j, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dict() {
        let (d, f, s) = parse_header_dict(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 32, 32, 3), }   \n",
        )
        .unwrap();
        assert_eq!((d.as_str(), f, s), ("|u1", false, vec![5, 32, 32, 3]));
        let (_, _, s) =
            parse_header_dict("{'descr': '<i8', 'fortran_order': True, 'shape': (7,)}").unwrap();
        assert_eq!(s, vec![7]);
        let (_, _, s) =
            parse_header_dict("{\"shape\": (), \"descr\": \"<f4\", \"fortran_order\": False}")
                .unwrap();
        assert!(s.is_empty());
        assert!(parse_header_dict("{'descr': '|u1', 'shape': (5,)}").is_err());
        assert!(
            parse_header_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (-5,)}").is_err()
        );
        assert!(
            parse_header_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (5,)").is_err()
        );
    }

    #[test]
    fn int_types() {
        let t = IntType::parse("<i8").unwrap();
        assert_eq!(t.decode(&(-3i64).to_le_bytes()), -3);
        let t = IntType::parse(">i2").unwrap();
        assert_eq!(t.decode(&(-300i16).to_be_bytes()), -300);
        let t = IntType::parse("<u4").unwrap();
        assert_eq!(t.decode(&4_000_000_000u32.to_le_bytes()), 4_000_000_000);
        assert_eq!(IntType::parse("|u1").unwrap().decode(&[200]), 200);
        assert!(IntType::parse("<f4").is_none());
    }
}
