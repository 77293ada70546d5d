//! The admin console: three static files embedded in the binary, each with a gzip twin
//! checked in beside it (`scripts/admin-gzip` makes them; a test holds them equal), served
//! with a strict Content-Security-Policy. The page talks to the API like any client.

use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::router::AdminAsset;

/// SECURITY: nothing but the console's own files; no inline script or style, no
/// `eval`, no string reaching an HTML sink (Trusted Types with no policy), no framing,
/// no `<base>`, forms posting only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// One embedded file, as written and gzipped.
pub struct Asset {
    pub plain: &'static [u8],
    pub gzip: &'static [u8],
    pub content_type: &'static str,
}

pub const PAGE: Asset = Asset {
    plain: include_bytes!("../admin/index.html"),
    gzip: include_bytes!("../admin/index.html.gz"),
    content_type: "text/html; charset=utf-8",
};

pub const SCRIPT: Asset = Asset {
    plain: include_bytes!("../admin/admin.js"),
    gzip: include_bytes!("../admin/admin.js.gz"),
    content_type: "text/javascript; charset=utf-8",
};

pub const STYLE: Asset = Asset {
    plain: include_bytes!("../admin/admin.css"),
    gzip: include_bytes!("../admin/admin.css.gz"),
    content_type: "text/css; charset=utf-8",
};

/// Answers `GET`/`HEAD` of one of the console's files.
pub fn serve(req: &Request, asset: AdminAsset) -> Result<Response, ApiError> {
    let file = match asset {
        // The page links its files relatively ("admin.js"), which resolves under the
        // console's path only from `P/`.
        AdminAsset::Redirect => {
            return Ok(Response::new(308).with_header("Location", format!("{}/", req.path)));
        }
        AdminAsset::Page => &PAGE,
        AdminAsset::Script => &SCRIPT,
        AdminAsset::Style => &STYLE,
    };
    let gzip = accepts_gzip(req.header("accept-encoding"));
    let resp = Response::new(200)
        .with_header("Content-Type", file.content_type)
        .with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Cross-Origin-Opener-Policy", "same-origin")
        .with_header("Cross-Origin-Resource-Policy", "same-origin")
        // The files change with the binary: revalidate rather than trust a stale copy.
        .with_header("Cache-Control", "no-cache")
        .with_header("Vary", "Accept-Encoding");
    Ok(if gzip {
        resp.with_header("Content-Encoding", "gzip")
            .with_body(file.gzip.to_vec())
    } else {
        resp.with_body(file.plain.to_vec())
    })
}

/// Whether an `Accept-Encoding` value admits gzip (RFC 9110 §12.5.3): a `gzip` or
/// `x-gzip` entry, else `*`, with a q-value above 0. No header means identity only.
fn accepts_gzip(header: Option<&str>) -> bool {
    let mut star = None;
    for item in header.unwrap_or("").split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_twins_decompress_to_their_sources() {
        for (name, asset) in [
            ("index.html", PAGE),
            ("admin.js", SCRIPT),
            ("admin.css", STYLE),
        ] {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(asset.gzip)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("src/admin/{name}.gz: {e}"));
            assert!(
                out == asset.plain,
                "src/admin/{name}.gz is stale: run scripts/admin-gzip"
            );
        }
    }

    #[test]
    fn accepts_gzip_follows_the_q_values() {
        let cases = [
            (None, false),
            (Some(""), false),
            (Some("identity"), false),
            (Some("gzip"), true),
            (Some("GZIP"), true),
            (Some("x-gzip"), true),
            (Some("gzip, deflate, br, zstd"), true),
            (Some("br;q=1.0, gzip;q=0.8"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.000"), false),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("gzip;q=0, *"), false),
            (Some("br, *;q=0.1"), true),
            (Some("deflate"), false),
        ];
        for (header, want) in cases {
            assert_eq!(accepts_gzip(header), want, "{header:?}");
        }
    }

    #[test]
    fn page_script_and_style_never_write_html_from_strings() {
        let js = std::str::from_utf8(SCRIPT.plain).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage",
        ] {
            assert!(!js.contains(sink), "admin.js uses {sink}");
        }
        let html = std::str::from_utf8(PAGE.plain).unwrap();
        assert!(!html.contains(" style="), "index.html has an inline style");
        let inline_handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!inline_handler, "index.html has an inline event handler");
        assert_eq!(html.matches("<script").count(), 1, "one external script");
        assert!(html.contains("<script src=\"admin.js\" defer></script>"));
    }
}
