//! `bml audit --html FILE`: the report as one self-contained page (inline
//! style and script, no request to anywhere) that shows what people would
//! rather see than read: a coverage heatmap per column class (symbol-day ×
//! hour, coloured by the source that held the input or by why nothing did),
//! then the problems, the reconciliation and the lake's lag.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{ClassMinutes, HourCoverage, Problem, Report};
use crate::schema::ColumnClass;
use crate::time::{utc_day, utc_hour, HOUR_MS};

/// A heatmap cell's state: its CSS class, legend text and colour. An hour
/// partly covered is split corner to corner: the source's colour and the
/// gap reason's.
const STATES: [(&str, &str, &str); 8] = [
    ("v", "Vision", "#2b6cb0"),
    ("r", "REST", "#2f855a"),
    ("l", "live stream", "#dd6b20"),
    ("q", "nothing to expect (no trade)", "#9ae6b4"),
    (
        "u",
        "gap: no source can fill it (the planner's reason)",
        "#718096",
    ),
    ("n", "gap: no live collector", "#e2e8f0"),
    ("m", "gap: no source in the log yet", "#e53e3e"),
    (
        "o",
        "outside the symbol's span or the audited range",
        "#ffffff",
    ),
];

/// The page, for the lake at `lake`.
pub fn page(report: &Report, lake: &str) -> String {
    let mut html = String::with_capacity(64 * 1024 + report.hours.len() * 1500);
    let verdict = if report.problems() == 0 {
        "clean".to_string()
    } else {
        format!(
            "{} problems, {} left",
            report.problems(),
            report.unrepaired()
        )
    };
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>bml audit: {verdict}</title><style>{STYLE}{}</style></head><body>\
         <h1>bml audit: <span id=\"verdict\">{verdict}</span></h1>\
         <p>The lake at <code>{}</code>, derived afresh from the log as of offset {} \
         ({} records past it not audited), {} partitions compared.</p>",
        STATES
            .iter()
            .map(|(class, _, colour)| format!(".{class}{{background:{colour}}}"))
            .collect::<String>(),
        escape(lake),
        report.lake.as_of,
        report.lake.behind,
        report.lake.partitions,
    );
    lag(&mut html, report);
    heatmaps(&mut html, &report.hours);
    problems(&mut html, report);
    reconciliation(&mut html, report);
    let _ = writeln!(html, "<script>{SCRIPT}</script></body></html>");
    html
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1a202c}\
table{border-collapse:collapse;margin:8px 0}th,td{padding:2px 8px;text-align:left}\
table.list td,table.list th{border-bottom:1px solid #e2e8f0}\
table.heat td{width:14px;height:14px;padding:0;border:1px solid #fff}\
table.heat th{font-weight:normal;font-size:12px;padding:0 6px}\
.legend span{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px 0 12px;border:1px solid #cbd5e0}\
summary{font-weight:bold;margin-top:12px;cursor:pointer}small{color:#4a5568;font-weight:normal}";

/// Counts the cells of each state once the page is drawn, and says so
/// under the legend: the browser test reads it back.
const SCRIPT: &str = "var n={};document.querySelectorAll('td.c').forEach(function(c){\
var s=c.className.split(' ')[1];n[s]=(n[s]||0)+1});\
document.getElementById('drawn').textContent='drawn: '+Object.keys(n).sort().map(function(k){return k+' '+n[k]}).join(', ');";

fn lag(html: &mut String, report: &Report) {
    html.push_str("<h2>Lag</h2><table class=\"list\"><tr><th>symbol</th><th>watermark</th><th>minutes behind now</th></tr>");
    for lag in &report.lag {
        row(
            html,
            &[&lag.symbol, &lag.watermark, &lag.minutes.to_string()],
        );
    }
    html.push_str("</table>");
}

/// One heatmap per column class: a row per symbol-day, a cell per hour.
fn heatmaps(html: &mut String, hours: &[HourCoverage]) {
    html.push_str("<h2>Coverage</h2><p class=\"legend\">");
    for (class, text, _) in STATES {
        let _ = write!(html, "<span class=\"{class}\"></span>{text}");
    }
    html.push_str("</p><p id=\"drawn\"></p>");
    let mut rows: BTreeMap<(&str, String), Vec<&HourCoverage>> = BTreeMap::new();
    for h in hours {
        rows.entry((&h.symbol, utc_day(h.hour)))
            .or_default()
            .push(h);
    }
    for (i, class) in ColumnClass::ALL.into_iter().enumerate() {
        // A class's table is a row per symbol-day and a cell per hour.
        let columns: Vec<String> = class.columns().iter().map(ToString::to_string).collect();
        let _ =
            write!(
            html,
            "<details open><summary>{} <small>{}, columns {}</small></summary><table class=\"heat\">\
             <tr><th>symbol</th><th>day</th>{}</tr>",
            class.name(),
            class.support().spec_name(),
            columns.join(", "),
            (0..24).map(|h| format!("<th>{h:02}</th>")).collect::<String>()
        );
        for ((symbol, day), cells) in &rows {
            let _ = write!(html, "<tr><th>{}</th><th>{day}</th>", escape(symbol));
            let mut by_hour: [Option<&HourCoverage>; 24] = [None; 24];
            for h in cells {
                by_hour[(h.hour.rem_euclid(24 * HOUR_MS) / HOUR_MS) as usize] = Some(h);
            }
            for cell in by_hour {
                match cell {
                    Some(h) if h.minutes > 0 => {
                        let c = &h.classes[i];
                        let (state, partly) = state(c);
                        let style = partly.map_or(String::new(), |source| {
                            format!(
                                " style=\"background:linear-gradient(135deg,{} 50%,{} 50%)\"",
                                colour(source),
                                colour(state)
                            )
                        });
                        let _ = write!(
                            html,
                            "<td class=\"c {state}\"{style} title=\"{} {}: {}\"></td>",
                            escape(symbol),
                            utc_hour(h.hour),
                            escape(&describe(c, h.minutes))
                        );
                    }
                    _ => html.push_str("<td class=\"c o\"></td>"),
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</table></details>");
    }
}

/// A cell's state: the reason with the most uncovered minutes if any are,
/// else the source holding the most minutes (the better on a tie); and,
/// for an hour partly covered, the state of its covered part too.
fn state(c: &ClassMinutes) -> (&'static str, Option<&'static str>) {
    let sources = [(c.vision, "v"), (c.rest, "r"), (c.live, "l")];
    let source = match sources.iter().rev().max_by_key(|(n, _)| *n) {
        Some((n, state)) if *n > 0 => state,
        _ => "q",
    };
    match c.gaps.iter().max_by_key(|g| g.minutes) {
        None => (source, None),
        Some(gap) => {
            let state = match gap.reason.as_str() {
                super::NO_COLLECTOR => "n",
                super::NOT_FETCHED | super::NOTHING => "m",
                _ => "u",
            };
            (state, (c.covered > 0).then_some(source))
        }
    }
}

/// A state's colour.
fn colour(state: &str) -> &'static str {
    STATES
        .iter()
        .find(|(class, _, _)| *class == state)
        .map_or("#ffffff", |(_, _, colour)| colour)
}

/// A cell's tooltip.
fn describe(c: &ClassMinutes, minutes: u32) -> String {
    let mut text = format!(
        "{} of {minutes} minutes covered (vision {}, rest {}, live {}, quiet {})",
        c.covered, c.vision, c.rest, c.live, c.quiet
    );
    for gap in &c.gaps {
        let _ = write!(text, "; {} minutes: {}", gap.minutes, gap.reason);
    }
    text
}

fn problems(html: &mut String, report: &Report) {
    html.push_str("<h2>Problems</h2>");
    if report.problems() == 0 {
        html.push_str("<p>None: the log reads, and the lake and the ledger are what it says.</p>");
        return;
    }
    html.push_str("<table class=\"list\" id=\"problems\"><tr><th>kind</th><th>what</th><th>detail</th><th>repaired</th></tr>");
    for p in &report.log.problems {
        row(html, &["log", "", p, "no"]);
    }
    let all: Vec<&Problem> = report
        .lake
        .problems
        .iter()
        .chain(&report.ledger.problems)
        .collect();
    for p in all {
        let repaired = if p.repaired { "yes" } else { "no" };
        row(html, &[p.kind, &p.what, &p.detail, repaired]);
    }
    html.push_str("</table>");
}

fn reconciliation(html: &mut String, report: &Report) {
    let r = &report.reconciliation;
    let _ = write!(
        html,
        "<h2>Reconciliation</h2><p>{}.</p><table class=\"list\" id=\"reconciliation\">\
         <tr><th>symbol</th><th>day</th><th>kind</th><th>held by</th><th>equal</th><th>conflicting</th></tr>",
        escape(r.rule)
    );
    if r.days.is_empty() {
        html.push_str("<tr><td colspan=\"6\">No fact was held by two sources.</td></tr>");
    }
    for d in &r.days {
        let (equal, conflicting) = (d.equal.to_string(), d.conflicting.to_string());
        row(
            html,
            &[&d.symbol, &d.day, &d.kind, &d.sources, &equal, &conflicting],
        );
    }
    html.push_str("</table>");
    if !r.first_conflicts.is_empty() {
        html.push_str("<h3>First conflicts</h3><table class=\"list\"><tr><th>symbol</th><th>hour</th><th>fact, sources, fields</th></tr>");
        for c in &r.first_conflicts {
            row(html, &[&c.symbol, &c.hour, &c.detail]);
        }
        html.push_str("</table>");
    }
}

/// A table row of text cells.
fn row(html: &mut String, cells: &[&str]) {
    html.push_str("<tr>");
    for cell in cells {
        let _ = write!(html, "<td>{}</td>", escape(cell));
    }
    html.push_str("</tr>");
}

/// Text made safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
