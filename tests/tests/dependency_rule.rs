//! Checks the dependency rule written in ARCHITECTURE.md: which workspace crates may depend on
//! which, and which crates must stay free of IO, async runtimes and terminals; and, inside the
//! server, that no two of its modules import each other, directly or around a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `(crate directory, dependencies it must never have)`.
const RULES: &[(&str, &[&str])] = &[
    // The wire protocol is IO-free and knows nothing of yrs internals or sockets.
    (
        "protocol",
        &[
            "tokio",
            "tokio-tungstenite",
            "yrs",
            "duet-doc",
            "duet-client",
            "duet-server",
            "ratatui",
            "crossterm",
        ],
    ),
    // The document model: no IO, no async, no terminal, no wire format.
    (
        "crates/duet-doc",
        &[
            "tokio",
            "tokio-tungstenite",
            "duet-protocol",
            "duet-client",
            "duet-server",
            "ratatui",
            "crossterm",
        ],
    ),
    // The update guard: pure byte checks, shared by server and editor; no yrs (it checks
    // what yrs would read, so it must not need yrs to do it), no IO.
    (
        "crates/duet-guard",
        &[
            "tokio",
            "tokio-tungstenite",
            "yrs",
            "duet-protocol",
            "duet-doc",
            "duet-client",
            "duet-server",
            "ratatui",
            "crossterm",
        ],
    ),
    // Yjs as duet speaks it (the y-websocket wire, awareness JSON, document options): no IO,
    // no runtime, no terminal, nothing of the editor or the server.
    (
        "crates/duet-yjs",
        &[
            "tokio",
            "tokio-tungstenite",
            "duet-doc",
            "duet-client",
            "duet-server",
            "ratatui",
            "crossterm",
        ],
    ),
    // The headless client: no terminal, no server.
    (
        "crates/duet-client",
        &["ratatui", "crossterm", "duet-server"],
    ),
    // Workspaces: the index and the directory scan; no network, no runtime, no terminal.
    (
        "crates/duet-workspace",
        &[
            "tokio",
            "tokio-tungstenite",
            "duet-client",
            "duet-server",
            "ratatui",
            "crossterm",
        ],
    ),
    // The server never depends on the editor side.
    (
        "server",
        &["duet-doc", "duet-client", "ratatui", "crossterm", "duet"],
    ),
];

/// The names in the `[dependencies]` table of a manifest (dev-dependencies are free).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && !line.is_empty()
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once(['=', '.'])
        {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn crates_respect_the_dependency_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut broken = Vec::new();
    for (dir, forbidden) in RULES {
        let path = root.join(dir).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let deps = dependencies(&manifest);
        assert!(
            !deps.is_empty() || *dir == "protocol",
            "no dependencies parsed from {}",
            path.display()
        );
        for dep in deps {
            if forbidden.contains(&dep.as_str()) {
                broken.push(format!("{dir} depends on {dep}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rule broken (see ARCHITECTURE.md): {broken:?}"
    );
}

#[test]
fn the_rule_parser_sees_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\ntokio.workspace = true\nserde = { version = \"1\" }\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(dependencies(manifest), vec!["tokio", "serde"]);
}

/// The server's top-level modules (`room/core.rs` belongs to `room`) and the ones each names
/// as `crate::NAME`. The crate root (`lib.rs`, `main.rs`) is left out: it holds every module.
fn server_module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    files(src, &mut paths);
    let module_of = |path: &Path| -> String {
        let rel = path.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_owned()
    };
    let modules: BTreeSet<String> = paths
        .iter()
        .map(|p| module_of(p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &paths {
        let from = module_of(path);
        if !modules.contains(&from) {
            continue;
        }
        let source = std::fs::read_to_string(path).expect("readable source");
        // Comments may name any module (doc links): only code counts.
        let text: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // `duet_server::` or `$crate::` are other crates' paths, not this one's.
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn server_modules_import_each_other_in_one_direction_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let graph = server_module_graph(&src);
    assert!(
        graph
            .get("room")
            .is_some_and(|uses| uses.contains("outbox")),
        "the scan sees imports: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "server modules import each other: {} (see ARCHITECTURE.md)",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("room", "outbox"), ("outbox", "room")])),
        Some(vec!["outbox".into(), "room".into(), "outbox".into()])
    );
}
