//! The report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

/// A table: header row and body rows of already formatted cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One piece of the report. Text is plain (no markup); renderers escape it.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Heading(usize, String),
    Para(String),
    Table(Table),
    List(Vec<String>),
    /// A plot: paths relative to the report directory.
    Image {
        alt: String,
        png: String,
        svg: String,
    },
    /// A picture at its own size (a VAE's image grid): a path relative to the report directory.
    Picture {
        alt: String,
        png: String,
    },
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn to_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                out.push_str(&"#".repeat((*level).clamp(1, 6)));
                out.push(' ');
                out.push_str(text);
                out.push_str("\n\n");
            }
            Block::Para(text) => {
                out.push_str(text);
                out.push_str("\n\n");
            }
            Block::List(items) => {
                for i in items {
                    out.push_str("- ");
                    out.push_str(i);
                    out.push('\n');
                }
                out.push('\n');
            }
            Block::Table(t) => {
                let row = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                out.push_str(&row(&t.header));
                let sep: Vec<String> = t
                    .header
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i == 0 { "---".into() } else { "---:".into() })
                    .collect();
                out.push_str(&format!("|{}|\n", sep.join("|")));
                for r in &t.rows {
                    out.push_str(&row(r));
                }
                out.push('\n');
            }
            Block::Image { alt, png, svg } => {
                out.push_str(&format!("![{alt}]({png})\n\n[SVG version]({svg})\n\n"));
            }
            Block::Picture { alt, png } => {
                out.push_str(&format!("![{alt}]({png})\n\n*{alt}*\n\n"));
            }
        }
    }
    out
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;max-width:1100px;\
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{border-bottom:2px solid #1f77b4;padding-bottom:.2em}\
h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:1em 0;font-size:.92em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}\
th{background:#f0f4f8}tr:nth-child(even) td{background:#fafafa}\
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption{font-size:.9em;color:#555}.scroll{overflow-x:auto}";

pub fn to_html(title: &str, blocks: &[Block]) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(title)));
    out.push_str(&format!("<style>{CSS}</style>\n</head>\n<body>\n"));
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let l = (*level).clamp(1, 6);
                out.push_str(&format!("<h{l}>{}</h{l}>\n", escape(text)));
            }
            Block::Para(text) => out.push_str(&format!("<p>{}</p>\n", escape(text))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    out.push_str(&format!("<li>{}</li>\n", escape(i)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(t) => {
                out.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
                for h in &t.header {
                    out.push_str(&format!("<th>{}</th>", escape(h)));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in &t.rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&format!("<td>{}</td>", escape(c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table></div>\n");
            }
            Block::Image { alt, png, svg } => {
                out.push_str(&format!(
                    "<figure><img src=\"{}\" alt=\"{}\" width=\"{}\" height=\"{}\">\
<figcaption>{} (<a href=\"{}\">SVG</a>)</figcaption></figure>\n",
                    escape(png),
                    escape(alt),
                    super::plot::WIDTH,
                    super::plot::HEIGHT,
                    escape(alt),
                    escape(svg)
                ));
            }
            Block::Picture { alt, png } => {
                out.push_str(&format!(
                    "<figure><img src=\"{}\" alt=\"{}\" style=\"image-rendering: pixelated; width: 448px\">\
<figcaption>{}</figcaption></figure>\n",
                    escape(png),
                    escape(alt),
                    escape(alt)
                ));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_in_both_formats() {
        let blocks = vec![
            Block::Heading(2, "A <b>".into()),
            Block::Table(Table {
                header: vec!["rule".into(), "f = 1".into()],
                rows: vec![vec!["bp".into(), "a|b".into()]],
            }),
            Block::Image { alt: "x".into(), png: "plots/x.png".into(), svg: "plots/x.svg".into() },
        ];
        let md = to_markdown(&blocks);
        assert!(md.contains("## A <b>"));
        assert!(md.contains("| rule | f = 1 |\n|---|---:|\n| bp | a\\|b |"));
        assert!(md.contains("![x](plots/x.png)"));
        let html = to_html("t", &blocks);
        assert!(html.contains("<h2>A &lt;b&gt;</h2>"));
        assert!(html.contains("<td>a|b</td>"));
        assert!(html.contains("<img src=\"plots/x.png\""));
        assert!(html.contains("<a href=\"plots/x.svg\">"));
    }
}
