//! Line charts as hand-written SVG: axes with ticks and labels, one
//! polyline with point markers per series, a legend, and optional vertical
//! markers (phases of a run). Small on purpose: the scale charts need no
//! more, and no charting dependency is worth it.

use std::fmt::Write;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 430.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 62.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Powers of two, evenly spaced (client counts).
    Log2,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
}

impl Axis {
    pub fn linear(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            scale: Scale::Linear,
        }
    }

    pub fn log2(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            scale: Scale::Log2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Index into the palette, so that related series share a colour.
    pub colour: usize,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Vertical lines at these x values, labelled.
    pub markers: Vec<(f64, String)>,
}

/// Ticks at 1, 2 or 5 times a power of ten, about `wanted` of them, from 0
/// (or below) to at least `max`.
pub fn nice_ticks(min: f64, max: f64, wanted: usize) -> Vec<f64> {
    let span = (max - min).max(f64::MIN_POSITIVE);
    let raw = span / wanted.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| span / step <= wanted as f64)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step).floor() * step;
    let mut ticks = Vec::new();
    let mut tick = first;
    while tick < max + step * 0.999 {
        ticks.push((tick / step).round() * step);
        tick += step;
        if ticks.len() > 50 {
            break;
        }
    }
    if ticks.len() < 2 {
        ticks.push(first + step);
    }
    ticks
}

/// Powers of two from below `min` to above `max`.
pub fn log2_ticks(min: f64, max: f64) -> Vec<f64> {
    let low = min.max(1e-9).log2().floor() as i32;
    let high = max.max(min * 2.0).log2().ceil() as i32;
    (low..=high.max(low + 1))
        .map(|power| 2f64.powi(power))
        .collect()
}

fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps data values onto one axis of the plot area.
struct Mapping {
    scale: Scale,
    low: f64,
    high: f64,
    from: f64,
    to: f64,
}

impl Mapping {
    /// `axis` from its first tick to its last, drawn from `from` to `to`.
    fn over(axis: &Axis, ticks: &[f64], from: f64, to: f64) -> Self {
        Self {
            scale: axis.scale,
            low: ticks[0],
            high: ticks[ticks.len() - 1],
            from,
            to,
        }
    }

    fn at(&self, value: f64) -> f64 {
        let (value, low, high) = match self.scale {
            Scale::Linear => (value, self.low, self.high),
            Scale::Log2 => (value.max(1e-9).log2(), self.low.log2(), self.high.log2()),
        };
        let share = if high > low {
            ((value - low) / (high - low)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.from + share * (self.to - self.from)
    }
}

fn ticks_for(axis: &Axis, values: &[f64]) -> Vec<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let max = finite.iter().copied().fold(f64::MIN, f64::max);
    let min = finite.iter().copied().fold(f64::MAX, f64::min);
    let (min, max) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        (min, max)
    };
    match axis.scale {
        Scale::Linear => nice_ticks(min.min(0.0), max.max(min.min(0.0) + 1e-9), 6),
        Scale::Log2 => log2_ticks(min, max),
    }
}

impl Chart {
    /// One coordinate, picked by `pick`, of every point of every series.
    fn coordinates(&self, pick: impl Fn(&(f64, f64)) -> f64) -> Vec<f64> {
        self.series
            .iter()
            .flat_map(|series| series.points.iter().map(&pick))
            .collect()
    }

    pub fn render(&self) -> String {
        let mut xs = self.coordinates(|point| point.0);
        xs.extend(self.markers.iter().map(|marker| marker.0));
        let ys = self.coordinates(|point| point.1);
        let x_ticks = ticks_for(&self.x, &xs);
        let y_ticks = ticks_for(&self.y, &ys);
        let plot_right = WIDTH - RIGHT;
        let plot_bottom = HEIGHT - BOTTOM;
        let x_map = Mapping::over(&self.x, &x_ticks, LEFT, plot_right);
        let y_map = Mapping::over(&self.y, &y_ticks, plot_bottom, TOP);

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="34" fill="#555">{}</text>"##,
            escape(&self.subtitle)
        );
        for &tick in &x_ticks {
            let x = x_map.at(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{plot_bottom}" stroke="#eee"/>"##
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                plot_bottom + 16.0,
                format_number(tick)
            );
        }
        for &tick in &y_ticks {
            let y = y_map.at(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#eee"/>"##
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                format_number(tick)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
            plot_right - LEFT,
            plot_bottom - TOP
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (LEFT + plot_right) / 2.0,
            HEIGHT - 18.0,
            escape(&self.x.label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            (TOP + plot_bottom) / 2.0,
            (TOP + plot_bottom) / 2.0,
            escape(&self.y.label)
        );
        for (index, (at, label)) in self.markers.iter().enumerate() {
            let x = x_map.at(*at);
            let label_y = TOP + 12.0 + 13.0 * (index % 3) as f64;
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{plot_bottom}" stroke="#888" stroke-dasharray="2 3"/>"##
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{label_y:.1}" fill="#555" font-size="10">{}</text>"##,
                x + 3.0,
                escape(label)
            );
        }
        for series in &self.series {
            let colour = COLOURS[series.colour % COLOURS.len()];
            let points: Vec<String> = series
                .points
                .iter()
                .filter(|point| point.0.is_finite() && point.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", x_map.at(x), y_map.at(y)))
                .collect();
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
                points.join(" ")
            );
            for point in &points {
                let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
        }
        let legend_x = plot_right + 14.0;
        for (index, series) in self.series.iter().enumerate() {
            let colour = COLOURS[series.colour % COLOURS.len()];
            let y = TOP + 10.0 + 20.0 * index as f64;
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{legend_x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2"{dash}/>"#,
                legend_x + 24.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                legend_x + 30.0,
                y + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(x: Axis) -> Chart {
        Chart {
            title: "Throughput <against> clients & more".into(),
            subtitle: "a test".into(),
            x,
            y: Axis::linear("claims/s"),
            series: vec![
                Series {
                    name: "raw".into(),
                    points: vec![(1.0, 120.0), (16.0, 900.0), (256.0, 1350.0)],
                    dashed: false,
                    colour: 0,
                },
                Series {
                    name: "http".into(),
                    points: vec![(1.0, 80.0), (16.0, 700.0), (256.0, 1100.0)],
                    dashed: true,
                    colour: 1,
                },
            ],
            markers: vec![(8.0, "a marker".into())],
        }
    }

    /// Every element opened is closed, in order; returns the element count.
    fn balanced(svg: &str) -> usize {
        let mut stack: Vec<String> = Vec::new();
        let mut elements = 0;
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("an unclosed tag") + start;
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "in {tag}");
            } else {
                elements += 1;
                let name = tag.split_whitespace().next().unwrap().trim_end_matches('/');
                if !tag.ends_with('/') {
                    stack.push(name.to_owned());
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        elements
    }

    fn attribute_values(svg: &str, name: &str) -> Vec<f64> {
        let needle = format!(" {name}=\"");
        svg.match_indices(&needle)
            .map(|(at, _)| {
                let value = &svg[at + needle.len()..];
                value[..value.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn the_svg_is_well_formed_and_its_points_inside_the_view_box() {
        for x in [Axis::log2("clients"), Axis::linear("seconds")] {
            let svg = chart(x).render();
            assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
            assert!(balanced(&svg) > 10);
            assert!(svg.contains("&lt;against&gt; clients &amp; more"));
            let cx = attribute_values(&svg, "cx");
            let cy = attribute_values(&svg, "cy");
            assert_eq!(cx.len(), 6);
            assert!(
                cx.iter().all(|x| (LEFT..=WIDTH - RIGHT).contains(x)),
                "{cx:?}"
            );
            assert!(
                cy.iter().all(|y| (TOP..=HEIGHT - BOTTOM).contains(y)),
                "{cy:?}"
            );
            for points in svg.split("points=\"").skip(1) {
                for pair in points[..points.find('"').unwrap()].split_whitespace() {
                    let (x, y) = pair.split_once(',').unwrap();
                    let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                    assert!((0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y));
                }
            }
        }
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let mut empty = chart(Axis::linear("x"));
        empty.series.clear();
        empty.markers.clear();
        assert!(balanced(&empty.render()) > 5);
    }

    #[test]
    fn ticks_cover_the_data_with_round_steps() {
        assert_eq!(nice_ticks(0.0, 1350.0, 6), vec![0.0, 500.0, 1000.0, 1500.0]);
        assert_eq!(nice_ticks(0.0, 9.0, 6), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            log2_ticks(1.0, 256.0),
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
        );
        assert_eq!(log2_ticks(3.0, 5.0), vec![2.0, 4.0, 8.0]);
    }
}
