//! [`Figure`]: an SVG document that evcxr shows inline and that can be saved atomically.

use std::path::Path;

use crate::Error;

/// A finished plot: an SVG document plus its title. Its `Debug` form is one short line (title
/// and size), so a figure printed by mistake never floods a notebook with SVG source.
///
/// The document keeps its own width and height (for files and other viewers); shown in a
/// notebook ([`Figure::evcxr_display`]) it scales to the cell ([`Figure::display_svg`]).
#[derive(Clone, PartialEq)]
pub struct Figure {
    title: String,
    svg: String,
    max_width: Option<u32>,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Figure {{ title: {:?}, svg: {} bytes }}",
            self.title,
            self.svg.len()
        )
    }
}

/// Makes a fixed-size SVG (`<svg width="W" height="H" viewBox=…>`, as plotters writes it) scale
/// to its container: `width="100%"`, no fixed height, at most `max_width` px wide (W when
/// `None`), the aspect ratio kept by the `viewBox`.
pub(super) fn responsive(svg: &str, max_width: Option<u32>) -> String {
    let Some(end) = svg.find('>') else {
        return svg.to_string();
    };
    let (head, rest) = svg.split_at(end);
    let attr = |name: &str| -> Option<String> {
        let start = head.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = head[start..].find('"')?;
        Some(head[start..start + len].to_string())
    };
    let (Some(w), Some(h)) = (attr("width"), attr("height")) else {
        return svg.to_string();
    };
    let max = max_width.map_or(w.clone(), |m| m.to_string());
    let head = head
        .replacen(&format!(" width=\"{w}\""), " width=\"100%\"", 1)
        .replacen(
            &format!(" height=\"{h}\""),
            &format!(" style=\"max-width: {max}px; height: auto\""),
            1,
        );
    format!("{head}{rest}")
}

impl Figure {
    /// Wraps an SVG document (`<svg ...>...</svg>`).
    pub fn new(title: impl Into<String>, svg: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            svg: svg.into(),
            max_width: None,
        }
    }

    /// Shown in a notebook at most `px` wide (default: the SVG's own width).
    pub fn with_max_width(mut self, px: Option<u32>) -> Self {
        self.max_width = px;
        self
    }

    /// The SVG as a notebook shows it: `width="100%"` of the cell, at most the figure's width
    /// (or [`Figure::with_max_width`]), the aspect ratio kept by the `viewBox`.
    pub fn display_svg(&self) -> String {
        responsive(&self.svg, self.max_width)
    }

    /// The figure's title (also drawn at the top of the SVG).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// Shows the figure inline in Jupyter (evcxr's display protocol) as a true `image/svg+xml`
    /// output. evcxr calls this when a cell's last expression is a `Figure`.
    pub fn evcxr_display(&self) {
        super::evcxr_show("image/svg+xml", &self.display_svg());
    }

    /// Writes the SVG to `path`, creating missing parent directories. The file is written under
    /// a temporary name beside `path` and renamed into place, so a reader never sees half a file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let file_name = path.file_name().ok_or_else(|| {
            Error::Io(format!(
                "cannot save a figure to `{}`: no file name",
                path.display()
            ))
        })?;
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = std::fs::write(&tmp, &self.svg).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            // Best effort: do not leave the temporary file behind.
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(written?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_creates_parent_dirs_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("robust-paf-figure-{}", std::process::id()));
        let path = dir.join("nested/plot.svg");
        let figure = Figure::new("t", "<svg></svg>");
        figure.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<svg></svg>");
        // Overwriting works, and only the figure is left in the directory.
        Figure::new("t", "<svg>2</svg>").save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<svg>2</svg>");
        let entries: Vec<_> = std::fs::read_dir(dir.join("nested")).unwrap().collect();
        assert_eq!(entries.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_is_short_and_svgs_scale_to_the_cell() {
        let svg = format!(
            "<svg width=\"1200\" height=\"400\" viewBox=\"0 0 1200 400\" xmlns=\"x\">{}</svg>",
            "<rect/>".repeat(10_000)
        );
        let figure = Figure::new("t", svg.clone());
        let debug = format!("{figure:?}");
        assert!(debug.len() < 80, "{debug}");
        assert_eq!(figure.svg(), svg, "the document keeps its size");
        let shown = figure.display_svg();
        let head = &shown[..shown.find('>').unwrap()];
        assert_eq!(
            head,
            "<svg width=\"100%\" style=\"max-width: 1200px; height: auto\" viewBox=\"0 0 1200 400\" xmlns=\"x\""
        );
        assert!(responsive(&svg, Some(900)).contains("max-width: 900px"));
        assert_eq!(responsive("not svg", None), "not svg");
    }

    #[test]
    fn save_rejects_a_path_without_file_name() {
        assert!(matches!(
            Figure::new("t", "<svg/>").save(".."),
            Err(Error::Io(_))
        ));
    }
}
