//! Notebook 04's entry points: PGD-AT with extra images mixed 1:1 into every batch
//! (docs/reproduction.md §3.5, the DDPM-6M runs behind the paper's headline).
//!
//! - [`extra_set`]: the bundled stand-in for generated data that quick mode mixes in
//!   ([`crate::data::fashion_mnist::extra_npz_path`]: 1,000 real Fashion-MNIST training images
//!   outside the embedded subset, in the `.npz` layout of the DDPM sets), and
//!   [`ExtraSet::set_override`], the `data.synthetic.path=…` line of a quick sweep;
//! - [`plot_real_and_extra`]: a few images of each class, from the real subset and from the
//!   extra set;
//! - [`extra_data_gains`]: what the extra images changed, per activation (clean and PGD
//!   accuracy with and without them), and the PSSiLU − ReLU gap in each condition (the quantity
//!   of the paper's +4.54 / +2.69).

use std::fmt;
use std::path::PathBuf;

use super::ablation::{ResultsRow, ResultsTable};
use super::table::{html_table, text_table};
use super::Figure;
use crate::data::fashion_mnist::{extra_npz_path, CLASS_NAMES, EXTRA_PER_CLASS};
use crate::data::{load_npz, FashionMnist, ImageSet, IMAGE_BYTES, IMAGE_SIZE};
use crate::train::TrainError;

/// The bundled extra set and what is in it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExtraSet {
    /// The `.npz` file.
    pub path: PathBuf,
    /// Number of images.
    pub images: usize,
    /// Images per class (class order of [`CLASS_NAMES`]).
    pub per_class: Vec<usize>,
}

impl ExtraSet {
    /// The sweep override that mixes this set into a run, as a TOML string (quoted and escaped,
    /// ready for a sweep's `set = [...]`): `"data.synthetic.path=/…/train-extra.npz"`.
    pub fn set_override(&self) -> String {
        toml::Value::String(format!("data.synthetic.path={}", self.path.display())).to_string()
    }
}

impl fmt::Display for ExtraSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "extra set: {} images ({} per class: {}) in {}\nreal Fashion-MNIST training images \
             outside the embedded subset, padded to 32×32×3: a STAND-IN for generated (DDPM) \
             images, mixed 1:1 into the batches without augmentation as the paper's synthetic data",
            self.images,
            EXTRA_PER_CLASS,
            self.per_class
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            self.path.display()
        )
    }
}

/// Opens the bundled extra set (an error naming the file when the crate was not built from a
/// checkout that has it).
pub fn extra_set() -> Result<ExtraSet, TrainError> {
    let path = extra_npz_path();
    let set = load_npz(&path, CLASS_NAMES.len())?;
    let mut per_class = vec![0; set.classes];
    for &l in set.labels() {
        per_class[l as usize] += 1;
    }
    Ok(ExtraSet {
        path,
        images: set.len(),
        per_class,
    })
}

/// `per_class` images of each class: the top rows from the embedded (real) training subset, the
/// bottom rows from the extra set, each image drawn 2× (64 px), one column per class.
///
/// ```
/// // the extra set ships with a checkout (`data::fashion_mnist::extra_npz_path`)
/// let fig = robust_paf::notebook::synthetic::plot_real_and_extra(2)?;
/// assert!(fig.svg().contains("<svg"));
/// # Ok::<(), robust_paf::train::TrainError>(())
/// ```
pub fn plot_real_and_extra(per_class: usize) -> Result<Figure, TrainError> {
    let per_class = per_class.clamp(1, 4);
    let real = FashionMnist::embedded()?.train;
    let extra = load_npz(extra_npz_path(), CLASS_NAMES.len())?;
    let classes = CLASS_NAMES.len();
    let pick = |set: &ImageSet| -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); classes];
        for (i, &l) in set.labels().iter().enumerate() {
            if by_class[l as usize].len() < per_class {
                by_class[l as usize].push(i);
            }
        }
        by_class
    };
    let (real_idx, extra_idx) = (pick(&real), pick(&extra));
    // the mosaic: rows of images, a 4 px gap between the real and the extra block
    let rows = 2 * per_class;
    let gap = 4;
    let (w, h) = (classes * IMAGE_SIZE, rows * IMAGE_SIZE + gap);
    // Fashion-MNIST is grey (R = G = B): a one-channel PNG, a third of the bytes
    let mut grey = vec![255u8; w * h];
    for (block, (set, idx)) in [(&real, &real_idx), (&extra, &extra_idx)]
        .into_iter()
        .enumerate()
    {
        for (c, images) in idx.iter().enumerate() {
            for (k, &i) in images.iter().enumerate() {
                let top = (block * per_class + k) * IMAGE_SIZE + block * gap;
                let img = set.image(i);
                debug_assert_eq!(img.len(), IMAGE_BYTES);
                for y in 0..IMAGE_SIZE {
                    for x in 0..IMAGE_SIZE {
                        // the mean of R, G, B (exact for grey images)
                        let p = &img[(y * IMAGE_SIZE + x) * 3..][..3];
                        grey[(top + y) * w + c * IMAGE_SIZE + x] =
                            ((p[0] as u16 + p[1] as u16 + p[2] as u16) / 3) as u8;
                    }
                }
            }
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let io = |e: png::EncodingError| TrainError::Model(crate::Error::Io(e.to_string()));
        let mut writer = enc.write_header().map_err(io)?;
        writer.write_image_data(&grey).map_err(io)?;
    }
    let scale = 2;
    let (left, top, bottom) = (130, 34, 14);
    let (img_w, img_h) = (w * scale, h * scale);
    let (width, height) = (left + img_w + 12, top + img_h + bottom);
    let mut svg = String::new();
    svg.push_str(&format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    ));
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        let x = left + c * IMAGE_SIZE * scale + IMAGE_SIZE * scale / 2;
        svg.push_str(&format!(
            "<text x=\"{x}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\" \
             text-anchor=\"middle\">{}</text>\n",
            top - 10,
            xml_escape(name)
        ));
    }
    for (block, label) in ["real (subset)", "extra set"].iter().enumerate() {
        let y = top
            + (block * per_class * IMAGE_SIZE + block * gap) * scale
            + per_class * IMAGE_SIZE * scale / 2;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"15\" \
             text-anchor=\"end\" dominant-baseline=\"middle\">{label}</text>\n",
            left - 10
        ));
    }
    svg.push_str(&format!(
        "<image x=\"{left}\" y=\"{top}\" width=\"{img_w}\" height=\"{img_h}\" \
         style=\"image-rendering: pixelated\" preserveAspectRatio=\"none\" \
         href=\"data:image/png;base64,{b64}\"/>\n</svg>\n",
        b64 = base64(&png_bytes)
    ));
    Ok(Figure::new(
        "real training images and the extra (stand-in) set",
        svg,
    ))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Standard base64 with padding (RFC 4648), for the PNG inside the SVG (a few kB: not worth a
/// dependency).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One configuration (activation, trainer, threat model) run with and without extra data.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GainRow {
    pub label: String,
    pub activation: String,
    /// Mean over seeds, fractions.
    pub clean_real: f64,
    pub clean_extra: f64,
    pub pgd_real: f64,
    pub pgd_extra: f64,
    /// Seeds with and without the extra data.
    pub seeds_real: usize,
    pub seeds_extra: usize,
}

/// [`extra_data_gains`]: shown as HTML by evcxr, as text by `Display`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GainTable {
    pub rows: Vec<GainRow>,
    /// PSSiLU (`pssilu2`) − ReLU PGD accuracy (points): real only, with the extra data (`None`
    /// when a side is missing).
    pub pssilu_minus_relu_real: Option<f64>,
    pub pssilu_minus_relu_extra: Option<f64>,
}

fn same_config(a: &ResultsRow, b: &ResultsRow) -> bool {
    a.activation == b.activation
        && a.trainer == b.trainer
        && a.fix_alpha == b.fix_alpha
        && a.fix_beta == b.fix_beta
        && a.norm == b.norm
        && a.eps == b.eps
}

/// Pairs each configuration trained on real images only with the same configuration trained
/// with synthetic images (rows of `table` that differ only in `synthetic`), in table order.
/// Configurations without both sides are left out.
pub fn extra_data_gains(table: &ResultsTable) -> GainTable {
    let pairs: Vec<(&ResultsRow, &ResultsRow)> = table
        .rows
        .iter()
        .filter(|r| r.synthetic.is_none())
        .filter_map(|real| {
            let extra = table
                .rows
                .iter()
                .find(|r| r.synthetic.is_some() && same_config(real, r))?;
            Some((real, extra))
        })
        .collect();
    // plain (learnable) PSSiLU against plain ReLU: rows with a frozen parameter do not count
    let gap = |side: fn(&(&ResultsRow, &ResultsRow)) -> f64| -> Option<f64> {
        let find = |act: &str| {
            pairs
                .iter()
                .find(|(r, _)| r.activation == act && r.fix_alpha.is_none() && r.fix_beta.is_none())
        };
        let d = 100.0 * (side(find("pssilu2")?) - side(find("relu")?));
        d.is_finite().then_some(d)
    };
    GainTable {
        pssilu_minus_relu_real: gap(|(real, _)| real.pgd_mean),
        pssilu_minus_relu_extra: gap(|(_, extra)| extra.pgd_mean),
        rows: pairs
            .iter()
            .map(|(real, extra)| GainRow {
                label: real.label(),
                activation: real.activation.clone(),
                clean_real: real.clean_mean,
                clean_extra: extra.clean_mean,
                pgd_real: real.pgd_mean,
                pgd_extra: extra.pgd_mean,
                seeds_real: real.seeds.len(),
                seeds_extra: extra.seeds.len(),
            })
            .collect(),
    }
}

fn pts(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", 100.0 * v)
    } else {
        "–".into()
    }
}

fn delta(a: f64, b: f64) -> String {
    let d = 100.0 * (b - a);
    if d.is_finite() {
        format!("{d:+.1}")
    } else {
        "–".into()
    }
}

impl GainTable {
    fn cells(&self) -> Vec<Vec<String>> {
        let mut out = vec![[
            "activation",
            "seeds (real / +extra)",
            "clean real (%)",
            "clean +extra (%)",
            "Δ clean",
            "PGD real (%)",
            "PGD +extra (%)",
            "Δ PGD",
        ]
        .map(String::from)
        .to_vec()];
        for r in &self.rows {
            out.push(vec![
                r.label.clone(),
                format!("{} / {}", r.seeds_real, r.seeds_extra),
                pts(r.clean_real),
                pts(r.clean_extra),
                delta(r.clean_real, r.clean_extra),
                pts(r.pgd_real),
                pts(r.pgd_extra),
                delta(r.pgd_real, r.pgd_extra),
            ]);
        }
        out
    }

    /// "PSSiLU − ReLU (PGD): real only +0.4, with extra data +1.2 points".
    pub fn gap_line(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |d| format!("{d:+.1}"));
        format!(
            "PSSiLU − ReLU, PGD accuracy (points): real only {}, with the extra data {} \
             (the paper: +4.54 AutoAttack points for ResNet-18 and +2.69 for WRN-28-10 on \
             CIFAR-10 with DDPM-6M)",
            f(self.pssilu_minus_relu_real),
            f(self.pssilu_minus_relu_extra)
        )
    }

    /// The table as HTML, the gap line below it.
    pub fn to_html(&self) -> String {
        format!(
            "{}<p>{}</p>",
            html_table(&self.cells()),
            xml_escape(&self.gap_line())
        )
    }

    /// Shows the table inline in Jupyter as `text/html`.
    pub fn evcxr_display(&self) {
        super::evcxr_show("text/html", &self.to_html());
    }
}

impl fmt::Display for GainTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text_table(f, &self.cells(), 1)?;
        write!(f, "\n{}", self.gap_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 §10
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), out, "{input:?}");
        }
    }
}
