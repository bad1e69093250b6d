//! Drawing the dashboard: a pure function of [`DashboardState`].

use std::collections::BTreeMap;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, BarChart, Block, Chart, Dataset, Gauge, GraphType, Paragraph, Tabs};
use ratatui::Frame;

use super::state::{DashboardState, Series, View};
use crate::objective::stats::StatsPanel;

const COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Green, Color::Blue];

/// Draws the whole dashboard.
pub fn render(frame: &mut Frame, state: &DashboardState) {
    let [header, tabs, gauge, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(state), header);
    let views = state.views();
    let titles: Vec<&str> = views.iter().map(|v| state.title(*v)).collect();
    let selected = views.iter().position(|v| *v == state.view).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    frame.render_widget(progress_gauge(state), gauge);
    match state.view {
        View::Overview => {
            let [top, bottom] =
                Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)])
                    .areas(body);
            let [loss, dev] = Layout::horizontal([Constraint::Percentage(50); 2]).areas(top);
            render_loss(frame, state, loss);
            render_dev(frame, state, dev);
            match &state.panel {
                Some(panel) => {
                    let [lr, stats] =
                        Layout::horizontal([Constraint::Percentage(50); 2]).areas(bottom);
                    render_lr(frame, state, lr);
                    render_stats(frame, state, panel, stats);
                }
                None => render_lr(frame, state, bottom),
            }
        }
        View::Loss => {
            let [loss, lr] =
                Layout::vertical([Constraint::Percentage(70), Constraint::Percentage(30)])
                    .areas(body);
            render_loss(frame, state, loss);
            render_lr(frame, state, lr);
        }
        View::Dev => render_dev(frame, state, body),
        View::Stats => {
            if let Some(panel) = &state.panel {
                render_stats(frame, state, panel, body);
            }
        }
    }
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" q ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(" stop (checkpoint, then exit)   "),
            Span::styled(" tab ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(" next view   "),
            Span::styled(
                format!(" 1-{} ", views.len()),
                Style::new().add_modifier(Modifier::REVERSED),
            ),
            Span::raw(" pick a view"),
        ])),
        footer,
    );
}

/// `gcse · run · backend · status`; while work runs inside the run
/// (evaluation, teacher vectors), its progress follows the status and the
/// run and backend move to the end, where a narrow terminal clips them.
fn header_line(state: &DashboardState) -> Paragraph<'static> {
    let title = Span::styled("gcse ", Style::new().add_modifier(Modifier::BOLD));
    let status = Span::styled(state.status.clone(), Style::new().fg(Color::Yellow));
    let run = format!("{} · {}", state.run, state.backend);
    let spans = match &state.work {
        None => vec![title, Span::raw(format!("· {run} · ")), status],
        Some(work) => vec![
            title,
            Span::raw("· "),
            status,
            Span::raw(" · "),
            Span::styled(work.clone(), Style::new().fg(Color::Cyan)),
            Span::raw(format!(" · {run}")),
        ],
    };
    Paragraph::new(Line::from(spans))
}

/// `h:mm:ss` or `m:ss`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

fn progress_gauge(state: &DashboardState) -> Gauge<'static> {
    let ratio = if state.total_steps == 0 {
        0.0
    } else {
        state.step as f64 / state.total_steps as f64
    };
    let eta = state.eta().map_or("--".into(), clock);
    let rate = state.throughput.map_or("--".into(), |r| format!("{r:.1}"));
    Gauge::default()
        .gauge_style(Style::new().fg(Color::Green))
        .ratio(ratio.clamp(0.0, 1.0))
        .label(format!(
            "step {}/{}  epoch {}/{}  {rate} sentences/s  elapsed {}  ETA {eta}",
            state.step,
            state.total_steps,
            state.epoch.0,
            state.epoch.1,
            clock(state.elapsed),
        ))
}

/// Axis bounds around the points of `series`, padded a little.
fn bounds<'a>(series: impl IntoIterator<Item = &'a Series>) -> ([f64; 2], [f64; 2]) {
    let points: Vec<(f64, f64)> = series
        .into_iter()
        .flatten()
        .copied()
        .filter(|(_, y)| y.is_finite())
        .collect();
    if points.is_empty() {
        return ([0.0, 1.0], [0.0, 1.0]);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(y1.abs() * 1e-3).max(1e-9);
    // Non-negative quantities (loss, learning rate) keep a floor at 0.
    let floor = if y0 >= 0.0 { 0.0 } else { f64::MIN };
    ([x0, x1], [(y0 - pad).max(floor), y1 + pad])
}

fn axis(title: &str, [lo, hi]: [f64; 2], format: fn(f64) -> String) -> Axis<'static> {
    Axis::default()
        .title(title.to_string())
        .bounds([lo, hi])
        .labels([format(lo), format((lo + hi) / 2.0), format(hi)])
        .style(Style::new().fg(Color::Gray))
}

fn chart<'a>(
    title: String,
    datasets: Vec<Dataset<'a>>,
    x: [f64; 2],
    y: [f64; 2],
    y_format: fn(f64) -> String,
) -> Chart<'a> {
    Chart::new(datasets)
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .block(Block::bordered().title(title))
        .x_axis(axis("step", x, |v| format!("{v:.0}")))
        .y_axis(axis("", y, y_format))
}

fn line<'a>(name: String, data: &'a Series, color: Color) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(color))
        .data(data)
}

/// One line per named series, each labelled with its latest value.
fn named_lines(series: &BTreeMap<String, Series>, decimals: usize) -> Vec<Dataset<'_>> {
    series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            let last = points
                .last()
                .map_or(String::new(), |(_, v)| format!(" {v:.decimals$}"));
            line(format!("{name}{last}"), points, COLORS[i % COLORS.len()])
        })
        .collect()
}

/// One line per series of `panel` that has points, in the panel's order,
/// each labelled with its latest value.
fn panel_lines<'a>(panel: &'a StatsPanel, stats: &'a BTreeMap<String, Series>) -> Vec<Dataset<'a>> {
    panel
        .series
        .iter()
        .filter_map(|spec| Some((spec, stats.get(&spec.key)?)))
        .enumerate()
        .map(|(i, (spec, points))| {
            let last = points
                .last()
                .map_or(String::new(), |(_, v)| format!(" {v:.*}", spec.decimals));
            line(
                format!("{}{last}", spec.label),
                points,
                COLORS[i % COLORS.len()],
            )
        })
        .collect()
}

fn render_loss(frame: &mut Frame, state: &DashboardState, area: Rect) {
    let curve = Curve {
        title: "loss",
        name: "loss",
        color: COLORS[0],
    };
    curve.render(
        frame,
        area,
        &state.loss,
        |l| format!("{l:.4}"),
        |v| format!("{v:.3}"),
    );
}

fn render_lr(frame: &mut Frame, state: &DashboardState, area: Rect) {
    let curve = Curve {
        title: "learning rate",
        name: "lr",
        color: COLORS[3],
    };
    curve.render(
        frame,
        area,
        &state.lr,
        |l| format!("{l:.2e}"),
        |v| format!("{v:.1e}"),
    );
}

/// A panel with one curve, its latest value in the title.
struct Curve {
    title: &'static str,
    name: &'static str,
    color: Color,
}

impl Curve {
    fn render(
        &self,
        frame: &mut Frame,
        area: Rect,
        series: &Series,
        latest: fn(f64) -> String,
        y_format: fn(f64) -> String,
    ) {
        let last = series.last().map_or("--".into(), |&(_, v)| latest(v));
        let (x, y) = bounds([series]);
        let data = vec![line(self.name.into(), series, self.color)];
        frame.render_widget(
            chart(format!("{} {last}", self.title), data, x, y, y_format),
            area,
        );
    }
}

fn render_dev(frame: &mut Frame, state: &DashboardState, area: Rect) {
    let best = state.best();
    let best_point: Series = best.map(|b| vec![b]).unwrap_or_default();
    let titles = &state.dev_titles;
    let title = match best {
        Some((step, score)) => format!(
            "dev {} · best {} {score:.2} @ step {step:.0}",
            titles.metric, titles.select_by
        ),
        None => format!("dev {} · not evaluated yet", titles.metric),
    };
    let mut data = named_lines(&state.dev, 2);
    data.push(
        Dataset::default()
            .name("best")
            .marker(Marker::Block)
            .graph_type(GraphType::Scatter)
            .style(Style::new().fg(Color::Yellow))
            .data(&best_point),
    );
    let (x, y) = bounds(state.dev.values());
    frame.render_widget(chart(title, data, x, y, |v| format!("{v:.1}")), area);
}

fn render_stats(frame: &mut Frame, state: &DashboardState, panel: &StatsPanel, area: Rect) {
    if state.stats.is_empty() {
        frame.render_widget(
            Paragraph::new(panel.placeholder.clone())
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(Block::bordered().title(panel.title.clone())),
            area,
        );
        return;
    }
    let data = panel_lines(panel, &state.stats);
    let (x, y) = bounds(state.stats.values());
    let curves = chart(panel.title.clone(), data, x, y, |v| format!("{v:.2}"));
    let histogram = panel
        .histogram
        .as_ref()
        .filter(|_| !state.histogram.is_empty());
    let Some(spec) = histogram.filter(|_| area.width >= 60) else {
        frame.render_widget(curves, area);
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    frame.render_widget(curves, left);
    let bins = state.histogram.len().max(1);
    let [low, high] = spec.range;
    let bars: Vec<(String, u64)> = state
        .histogram
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            (
                format!("{:.1}", low + (high - low) * i as f64 / bins as f64),
                c,
            )
        })
        .collect();
    let bars: Vec<(&str, u64)> = bars.iter().map(|(l, c)| (l.as_str(), *c)).collect();
    let width = ((right.width.saturating_sub(2)) / bins as u16)
        .saturating_sub(1)
        .max(1);
    frame.render_widget(
        BarChart::default()
            .block(Block::bordered().title(spec.title.clone()))
            .data(bars.as_slice())
            .bar_width(width)
            .bar_style(Style::new().fg(Color::Magenta)),
        right,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::screenshot::render_cells;
    use crate::dashboard::state::tests::{sample_panel, sample_state, sts_titles};
    use crate::train::metric::{counts, numeric};

    fn text(state: &DashboardState, cols: u16, rows: u16) -> String {
        let buffer = render_cells(state, cols, rows);
        (0..rows)
            .map(|y| {
                (0..cols)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn the_overview_shows_progress_curves_and_the_best_score() {
        let screen = text(&sample_state(), 120, 36);
        for expected in [
            "runs/quickstart",
            "cpu (ndarray, 2 threads)",
            "step 250/500",
            "epoch 1/2",
            "32.0 sentences/s",
            "elapsed 8:20",
            "ETA 8:20",
            "loss 0.0080",
            "learning rate 1.50e-5",
            "best stsb-dev 81.20 @ step 250",
            "stsb-dev 81.20",
            "sickr-dev 71.50",
            "stage 2 decay",
            "q  stop",
        ] {
            assert!(
                screen.contains(expected),
                "missing {expected:?} in\n{screen}"
            );
        }
        // Curves are drawn: braille cells inside the loss panel.
        assert!(
            screen
                .chars()
                .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
            "{screen}"
        );
    }

    #[test]
    fn each_view_shows_its_panels() {
        let mut state = sample_state();
        state.view = View::Loss;
        let screen = text(&state, 100, 30);
        assert!(
            screen.contains("loss 0.0080") && !screen.contains("dev Spearman"),
            "{screen}"
        );
        state.view = View::Dev;
        let screen = text(&state, 100, 30);
        assert!(
            screen.contains("dev Spearman") && !screen.contains("learning rate"),
            "{screen}"
        );
        state.view = View::Stats;
        assert!(text(&state, 100, 30).contains("mean Gaussian decay"));
        let panel = sample_panel();
        state.apply(&numeric(&panel.metric("mean_weight"), 0.875, String::new()));
        let screen = text(&state, 100, 30);
        assert!(screen.contains("mean weight 0.875"), "{screen}");
        state.apply(&counts(
            &panel.metric("weights"),
            &[0, 0, 3, 0, 0, 0, 0, 0, 0, 61],
        ));
        assert_eq!(state.histogram[9], 61);
        let screen = text(&state, 100, 30);
        assert!(
            screen.contains("weights, last batch") && screen.contains("61"),
            "{screen}"
        );
    }

    #[test]
    fn work_inside_the_run_shows_in_the_header_line() {
        let mut state = sample_state();
        state.status = "evaluating on the dev sets".into();
        state.work = Some("128/2909 sentences (152/s, 18s left)".into());
        let screen = text(&state, 150, 42);
        let header = screen.lines().next().unwrap();
        assert!(
            header.contains("evaluating on the dev sets · 128/2909 sentences (152/s, 18s left)"),
            "{screen}"
        );
        state.work = None;
        assert!(!text(&state, 150, 42).contains("2909"));
    }

    #[test]
    fn tiny_and_empty_dashboards_draw_without_panicking() {
        let empty = DashboardState::new("r".into(), "cpu".into(), sts_titles(), &[], None);
        for (cols, rows) in [(1, 1), (20, 5), (80, 24)] {
            text(&empty, cols, rows);
            text(&sample_state(), cols, rows);
        }
        assert!(text(&empty, 120, 36).contains("not evaluated yet"));
    }

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(61.4), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(-3.0), "0:00");
    }
}
