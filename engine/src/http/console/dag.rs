//! A workflow's DAG as server-rendered SVG: a layered layout computed here (no script, no
//! graph library in the browser), drawn with maud.
//!
//! ```text
//!   nodes + edges ─▶ layers (longest path from the sources, Kahn's order)
//!                 ─▶ order within each layer (barycenter sweeps, down then up)
//!                 ─▶ coordinates (layer = row, position = column, rows centred)
//!                 ─▶ <svg>: one <g class="node st-STATUS"> per node, one path per edge
//! ```
//!
//! - **Layers**: a node's layer is the length of the longest path from a source to it, so
//!   every edge points down. The input need not be valid (the editor previews what is being
//!   typed, and a drawing must never panic): nodes on a cycle, which Kahn's algorithm never
//!   releases, go to one extra layer below the rest; edges naming a missing node are dropped.
//! - **Order**: [`SWEEPS`] rounds of the barycenter heuristic (Sugiyama et al., 1981): each
//!   node moves to the mean position of its predecessors (down sweep) or successors (up
//!   sweep); ties keep the previous order, so the drawing is deterministic.
//! - **Edges** are cubic curves from the bottom of the source to the top of the target, with
//!   an arrow head; an edge leaving a decision carries its branch, `true` or `false`, as a
//!   label at its middle. An edge spanning several layers is drawn straight through them (no
//!   dummy nodes): at the sizes a workflow has (at most 1000 nodes) this reads well enough.
//! - **Colours** come from classes only (`st-SUCCEED`, `kind-DECISION`, ...) styled in
//!   `console.css`, the same state colours as every badge; the SVG carries no style attribute
//!   (the page's CSP forbids inline styles).
//! - **Size**: O((nodes + edges) · log nodes) per sweep; the SVG has a `viewBox`, so it scales down to the
//!   page width, and it sits in a scrolling box on narrow screens.

use maud::{html, Markup};

/// Barycenter rounds (each a down and an up sweep).
const SWEEPS: usize = 4;
/// A node box's size and the gaps between boxes, in SVG units.
const NODE_W: f64 = 170.0;
const NODE_H: f64 = 46.0;
const GAP_X: f64 = 30.0;
const GAP_Y: f64 = 56.0;
const MARGIN: f64 = 12.0;
/// Characters of a node's label shown in its box (the full label is in its tooltip).
const LABEL_CHARS: usize = 22;

/// One node to draw.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DagNode {
    /// The node's id in the definition (shown as `#id`).
    pub(crate) id: u64,
    /// `JOB`, `DECISION` or `NESTED_WORKFLOW`.
    pub(crate) kind: &'static str,
    /// What it runs: a job's name, a decision's expression, a nested workflow's name.
    pub(crate) label: String,
    /// A status class suffix (`SUCCEED`, `RUNNING`, ...); `None` for a definition.
    pub(crate) status: Option<&'static str>,
    /// Disabled in the definition.
    pub(crate) disabled: bool,
    /// Where the node's box links (its job, its instance).
    pub(crate) href: Option<String>,
}

/// One edge to draw, by node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DagEdge {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// The branch of an edge leaving a decision.
    pub(crate) branch: Option<bool>,
}

/// Where each node went: `(layer, position within the layer)`, by node index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) place: Vec<(usize, usize)>,
    /// Nodes per layer, in order (node indices).
    pub(crate) layers: Vec<Vec<usize>>,
    /// Edges by node index (those naming a missing node left out).
    pub(crate) edges: Vec<(usize, usize, Option<bool>)>,
}

/// Lays out `nodes` and `edges` (see the module doc).
pub(crate) fn layout(nodes: &[DagNode], edges: &[DagEdge]) -> Layout {
    let n = nodes.len();
    let index: std::collections::HashMap<u64, usize> =
        nodes.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    let edges: Vec<(usize, usize, Option<bool>)> = edges
        .iter()
        .filter_map(|e| Some((*index.get(&e.from)?, *index.get(&e.to)?, e.branch)))
        .filter(|(a, b, _)| a != b)
        .collect();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut ins: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for &(a, b, _) in &edges {
        if let (Some(o), Some(i), Some(d)) = (out.get_mut(a), ins.get_mut(b), indegree.get_mut(b)) {
            o.push(b);
            i.push(a);
            *d += 1;
        }
    }
    // Kahn's order; a node's layer is one below its deepest released predecessor.
    let mut layer = vec![0usize; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree.get(i) == Some(&0)).collect();
    let mut released = vec![false; n];
    while let Some(v) = queue.pop_front() {
        if let Some(r) = released.get_mut(v) {
            *r = true;
        }
        let lv = layer.get(v).copied().unwrap_or(0);
        for &w in out.get(v).map_or(&[][..], Vec::as_slice) {
            if let Some(l) = layer.get_mut(w) {
                *l = (*l).max(lv + 1);
            }
            if let Some(d) = indegree.get_mut(w) {
                *d -= 1;
                if *d == 0 {
                    queue.push_back(w);
                }
            }
        }
    }
    let deepest = (0..n)
        .filter(|&i| released.get(i) == Some(&true))
        .filter_map(|i| layer.get(i).copied())
        .max();
    let cycle_layer = deepest.map_or(0, |d| d + 1);
    for (i, l) in layer.iter_mut().enumerate() {
        if released.get(i) != Some(&true) {
            *l = cycle_layer;
        }
    }
    let count = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, &l) in layer.iter().enumerate() {
        if let Some(row) = layers.get_mut(l) {
            row.push(i);
        }
    }
    let mut pos = vec![0usize; n];
    for row in &layers {
        for (p, &v) in row.iter().enumerate() {
            if let Some(slot) = pos.get_mut(v) {
                *slot = p;
            }
        }
    }
    for _ in 0..SWEEPS {
        for down in [true, false] {
            let rows: Vec<usize> = if down {
                (1..count).collect()
            } else {
                (0..count.saturating_sub(1)).rev().collect()
            };
            for r in rows {
                let Some(row) = layers.get(r) else { continue };
                let neighbours = if down { &ins } else { &out };
                let mut keyed: Vec<(f64, usize, usize)> = row
                    .iter()
                    .enumerate()
                    .map(|(p, &v)| {
                        let adj = neighbours.get(v).map_or(&[][..], Vec::as_slice);
                        let near: Vec<f64> = adj
                            .iter()
                            .filter_map(|&w| pos.get(w).map(|&x| x as f64))
                            .collect();
                        let key = if near.is_empty() {
                            p as f64
                        } else {
                            near.iter().sum::<f64>() / near.len() as f64
                        };
                        (key, p, v)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let sorted: Vec<usize> = keyed.into_iter().map(|(_, _, v)| v).collect();
                for (p, &v) in sorted.iter().enumerate() {
                    if let Some(slot) = pos.get_mut(v) {
                        *slot = p;
                    }
                }
                if let Some(row) = layers.get_mut(r) {
                    *row = sorted;
                }
            }
        }
    }
    let place = (0..n)
        .map(|i| {
            (
                layer.get(i).copied().unwrap_or(0),
                pos.get(i).copied().unwrap_or(0),
            )
        })
        .collect();
    Layout {
        place,
        layers,
        edges,
    }
}

/// The first [`LABEL_CHARS`] characters of `text`, with an ellipsis when cut.
fn short(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(LABEL_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// The DAG as an `<svg>` (see the module doc); `caption` names it for screen readers.
pub(crate) fn svg(nodes: &[DagNode], edges: &[DagEdge], caption: &str) -> Markup {
    let l = layout(nodes, edges);
    let widest = l.layers.iter().map(Vec::len).max().unwrap_or(0).max(1) as f64;
    let width = 2.0 * MARGIN + widest * NODE_W + (widest - 1.0) * GAP_X;
    let rows = l.layers.len().max(1) as f64;
    let height = 2.0 * MARGIN + rows * NODE_H + (rows - 1.0) * GAP_Y;
    // A node's top-left corner: its layer's row, centred horizontally.
    let corner = |i: usize| -> (f64, f64) {
        let (layer, p) = l.place.get(i).copied().unwrap_or((0, 0));
        let in_row = l.layers.get(layer).map_or(1, Vec::len) as f64;
        let row_w = in_row * NODE_W + (in_row - 1.0) * GAP_X;
        let x = (width - row_w) / 2.0 + p as f64 * (NODE_W + GAP_X);
        let y = MARGIN + layer as f64 * (NODE_H + GAP_Y);
        (x, y)
    };
    let f = |v: f64| format!("{v:.1}");
    html! {
        div.dag-box {
            svg.dag xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(caption)
                viewBox={ "0 0 " (f(width)) " " (f(height)) } width=(f(width)) height=(f(height)) {
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                        path.arrow d="M 0 0 L 10 5 L 0 10 z" {}
                    }
                }
                @for &(a, b, branch) in &l.edges {
                    @let (ax, ay) = corner(a);
                    @let (bx, by) = corner(b);
                    @let (x1, y1) = (ax + NODE_W / 2.0, ay + NODE_H);
                    @let (x2, y2) = (bx + NODE_W / 2.0, by);
                    @let bend = ((y2 - y1).abs() / 2.0).max(GAP_Y / 2.0);
                    @let class = match branch { Some(true) => "edge branch-true", Some(false) => "edge branch-false", None => "edge" };
                    path class=(class) marker-end="url(#arrow)"
                        d={ "M " (f(x1)) " " (f(y1)) " C " (f(x1)) " " (f(y1 + bend)) ", " (f(x2)) " " (f(y2 - bend)) ", " (f(x2)) " " (f(y2)) } {}
                    @if let Some(b) = branch {
                        text.edge-label x=(f((x1 + x2) / 2.0 + 4.0)) y=(f((y1 + y2) / 2.0)) { (b) }
                    }
                }
                @for (i, d) in nodes.iter().enumerate() {
                    @let (x, y) = corner(i);
                    @let class = format!("node kind-{} st-{}{}", d.kind, d.status.unwrap_or("DEF"), if d.disabled { " disabled" } else { "" });
                    @let body = html! {
                        title { "#" (d.id) " " (d.kind) ": " (d.label) @if let Some(s) = d.status { " (" (s) ")" } @if d.disabled { " (disabled)" } }
                        rect x=(f(x)) y=(f(y)) width=(f(NODE_W)) height=(f(NODE_H)) rx=(if d.kind == "DECISION" { "18" } else { "5" }) {}
                        text.node-head x=(f(x + 8.0)) y=(f(y + 17.0)) { "#" (d.id) " " (d.kind) @if let Some(s) = d.status { " · " (s) } }
                        text.node-label x=(f(x + 8.0)) y=(f(y + 36.0)) { (short(&d.label)) }
                    };
                    @match &d.href {
                        Some(href) => { a href=(href) { g class=(class) data-node=(d.id) { (body) } } }
                        None => { g class=(class) data-node=(d.id) { (body) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> DagNode {
        DagNode {
            id,
            kind: "JOB",
            label: format!("job {id}"),
            status: None,
            disabled: false,
            href: None,
        }
    }

    fn edge(from: u64, to: u64) -> DagEdge {
        DagEdge {
            from,
            to,
            branch: None,
        }
    }

    #[test]
    fn layers_follow_the_longest_path_so_every_edge_points_down() {
        // 1 → 2 → 3, and 1 → 3 directly: 3 sits two layers below 1, not one.
        let nodes: Vec<DagNode> = (1..=4).map(node).collect();
        let edges = [edge(1, 2), edge(2, 3), edge(1, 3), edge(4, 3)];
        let l = layout(&nodes, &edges);
        let layer_of = |id: u64| l.place[nodes.iter().position(|n| n.id == id).unwrap()].0;
        assert_eq!((layer_of(1), layer_of(2), layer_of(3)), (0, 1, 2));
        assert_eq!(layer_of(4), 0);
        for &(a, b, _) in &l.edges {
            assert!(l.place[a].0 < l.place[b].0, "{a} → {b}");
        }
        // Every node is in exactly one layer, at its recorded position.
        let mut seen = vec![false; nodes.len()];
        for (li, row) in l.layers.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                assert!(!seen[v]);
                seen[v] = true;
                assert_eq!(l.place[v], (li, p));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn the_largest_workflow_lays_out_with_every_edge_pointing_down() {
        // 1000 nodes (the definition's limit): a spine 0..100, each spine node fanning out
        // to nine leaves, and every leaf joining the next spine node.
        let nodes: Vec<DagNode> = (0..1000).map(node).collect();
        let mut edges = Vec::new();
        for s in 0..99 {
            edges.push(edge(s, s + 1));
            for k in 0..9 {
                let leaf = 100 + s * 9 + k;
                edges.push(edge(s, leaf));
                edges.push(edge(leaf, s + 1));
            }
        }
        let l = layout(&nodes, &edges);
        assert_eq!(l.edges.len(), edges.len());
        for &(a, b, _) in &l.edges {
            assert!(l.place[a].0 < l.place[b].0, "{a} → {b}");
        }
        assert_eq!(l.place[99].0, 2 * 99, "each spine step is two layers deep");
        let svg = svg(&nodes, &edges, "big").into_string();
        assert_eq!(svg.matches("<g class=\"node").count(), 1000);
    }

    #[test]
    fn barycenter_ordering_uncrosses_a_swapped_pair() {
        // Sources a=1, b=2; targets listed in the crossing order: 3 under b, 4 under a.
        let nodes: Vec<DagNode> = [1, 2, 3, 4].into_iter().map(node).collect();
        let edges = [edge(2, 3), edge(1, 4)];
        let l = layout(&nodes, &edges);
        let pos = |id: u64| l.place[nodes.iter().position(|n| n.id == id).unwrap()].1;
        assert_eq!(pos(1) < pos(2), pos(4) < pos(3), "the edges cross: {l:?}");
    }

    #[test]
    fn cycles_and_dangling_edges_still_draw() {
        let nodes: Vec<DagNode> = [1, 2, 3].into_iter().map(node).collect();
        let edges = [edge(1, 2), edge(2, 3), edge(3, 2), edge(3, 99), edge(1, 1)];
        let l = layout(&nodes, &edges);
        assert_eq!(
            l.edges.len(),
            3,
            "the missing node and the self-loop are dropped"
        );
        assert_eq!(l.place[0].0, 0);
        assert_eq!(
            l.place[1].0, 1,
            "nodes on the cycle share the layer below the rest"
        );
        assert_eq!(l.place[2].0, 1);
        let svg = svg(&nodes, &edges, "x").into_string();
        assert_eq!(svg.matches("<g class=\"node").count(), 3);
        assert!(layout(&[], &[]).layers.is_empty());
        assert!(super::svg(&[], &[], "empty").into_string().contains("<svg"));
    }

    #[test]
    fn the_svg_labels_branches_colours_by_status_and_escapes_labels() {
        let mut decide = node(1);
        decide.kind = "DECISION";
        decide.label = "<script>x</script> && ctx.a > 1".into();
        decide.status = Some("SUCCEED");
        let mut yes = node(2);
        yes.status = Some("RUNNING");
        yes.href = Some("/instances/7".into());
        let mut no = node(3);
        no.status = Some("SKIPPED");
        no.disabled = true;
        let edges = [
            DagEdge {
                from: 1,
                to: 2,
                branch: Some(true),
            },
            DagEdge {
                from: 1,
                to: 3,
                branch: Some(false),
            },
        ];
        let svg = svg(&[decide, yes, no], &edges, "workflow <w>").into_string();
        assert!(
            svg.contains(r#"class="node kind-DECISION st-SUCCEED""#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="node kind-JOB st-RUNNING""#), "{svg}");
        assert!(
            svg.contains(r#"class="node kind-JOB st-SKIPPED disabled""#),
            "{svg}"
        );
        assert!(svg.contains(r#"<a href="/instances/7">"#), "{svg}");
        assert!(svg.contains(r#"class="edge branch-true""#) && svg.contains(">true</text>"));
        assert!(svg.contains(r#"class="edge branch-false""#) && svg.contains(">false</text>"));
        assert!(
            !svg.contains("<script>") && svg.contains("&lt;script&gt;"),
            "{svg}"
        );
        assert!(svg.contains(r#"aria-label="workflow &lt;w&gt;""#), "{svg}");
        assert!(!svg.contains("style="), "no inline style under the CSP");
        assert_eq!(
            short("abcdefghijklmnopqrstuvwxyz"),
            "abcdefghijklmnopqrstuv…"
        );
        assert_eq!(short("ééé"), "ééé");
    }
}
