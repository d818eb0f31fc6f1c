//! Where a run's report files go: a newcomer running plain `ferry lab` gets the HTML page and
//! the JSON in the current directory without knowing the flags, and can open the page at once.

use std::path::{Path, PathBuf};

/// Where a run without `--html` writes its page, in the current directory.
pub const DEFAULT_HTML: &str = "./ferry-lab.html";
/// Where a run without `--json` writes its results.
pub const DEFAULT_JSON: &str = "./ferry-lab.json";

/// The files a run writes.
#[derive(Debug, PartialEq, Eq)]
pub struct Paths {
    pub html: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

/// The report files of a run given `--html`, `--json` and `--no-report`: a newcomer running
/// plain `ferry lab` gets both files in the current directory, a path given wins for its file,
/// and `--no-report` leaves out the files nobody asked for.
pub fn paths(html: Option<&Path>, json: Option<&Path>, no_report: bool) -> Paths {
    let or_default = |given: Option<&Path>, default: &str| match given {
        Some(path) => Some(path.to_path_buf()),
        None => (!no_report).then(|| PathBuf::from(default)),
    };
    Paths {
        html: or_default(html, DEFAULT_HTML),
        json: or_default(json, DEFAULT_JSON),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(html: Option<&str>, json: Option<&str>, no_report: bool, expect: [Option<&str>; 2]) {
        let expect = Paths {
            html: expect[0].map(PathBuf::from),
            json: expect[1].map(PathBuf::from),
        };
        let got = paths(html.map(Path::new), json.map(Path::new), no_report);
        assert_eq!(got, expect, "{html:?} {json:?} {no_report}");
    }

    #[test]
    fn report_paths_as_data() {
        let (html, json) = (Some("./ferry-lab.html"), Some("./ferry-lab.json"));
        check(None, None, false, [html, json]);
        check(Some("a.html"), None, false, [Some("a.html"), json]);
        check(None, Some("b.json"), false, [html, Some("b.json")]);
        check(None, None, true, [None, None]);
        check(Some("a.html"), None, true, [Some("a.html"), None]);
        check(
            Some("a.html"),
            Some("b.json"),
            true,
            [Some("a.html"), Some("b.json")],
        );
    }
}
