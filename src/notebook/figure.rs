//! [`Figure`]: an SVG document that evcxr shows inline and that can be saved atomically.

use std::path::Path;

use crate::Error;

/// A finished plot: an SVG document plus its title.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    title: String,
    svg: String,
}

impl Figure {
    /// Wraps an SVG document (`<svg ...>...</svg>`).
    pub fn new(title: impl Into<String>, svg: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            svg: svg.into(),
        }
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
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
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
    fn save_rejects_a_path_without_file_name() {
        assert!(matches!(
            Figure::new("t", "<svg/>").save(".."),
            Err(Error::Io(_))
        ));
    }
}
