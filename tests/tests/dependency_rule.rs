//! Checks the dependency rule written in ARCHITECTURE.md: which workspace crates may depend on
//! which, and which crates must stay free of IO, async runtimes and terminals.

use std::path::Path;

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
