//! The layer check (issue 9, scope 1; STYLE.md § Layers): every
//! `crate::…` path in `src/` must point down the layers, modules of one layer
//! must not import each other in a cycle, integrations must not import each
//! other, and `app` must not import `server::http`.
//!
//! Its own test binary, without the database or any dependency:
//!
//! ```sh
//! cargo test --test layers                  # the check
//! cargo test --test layers -- --nocapture   # and print the module graph
//! ```
//!
//! A file belongs to the module of its path: `src/types/**` → `types`,
//! `src/app/**` → `app`, `src/server/<m>.rs` and `src/server/<m>/**` →
//! `server::<m>`, `src/main.rs` → `main`. Comment lines (`//`, `///`, `//!`)
//! are not imports and are skipped, so a doc link may name any module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The layers, low to high. A module may import only modules of its own
/// layer (without cycles) or of lower layers.
const LAYERS: &[(&str, &[&str])] = &[
    ("types", &["types"]),
    (
        "leaf",
        &[
            "server::db",
            "server::config",
            "server::flags",
            "server::disposable_email",
            "server::rate_limit",
            "server::client_ip",
            "server::metrics",
        ],
    ),
    ("domain", &["server::billing"]),
    ("state", &["server::state"]),
    // Account services over the domain (README § Layout): they take the
    // wired AppState (config, pool, flags) and the request's session, and
    // integrations provision accounts through them; never the reverse.
    (
        "accounts",
        &["server::auth", "server::admin", "server::signup"],
    ),
    (
        "integration",
        &[
            "server::stripe",
            "server::marketplace",
            "server::email",
            "server::ai",
        ],
    ),
    ("adapter", &["server::http", "app"]),
    (
        "wiring",
        &[
            "server::jobs",
            "server::cli",
            "server::preflight",
            "server::bench_reference",
            "main",
        ],
    ),
];

/// The layer whose modules may not import each other at all (STYLE.md: "an
/// integration never imports another integration's internals").
const NO_PEER_IMPORTS: &str = "integration";

/// Single imports forbidden although they point down or sideways.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "app",
    "server::http",
    "app never imports server::http: shared helpers live in types or an app module",
)];

/// Known violations the check tolerates for now, each with the reason and
/// who removes it: `(importing file, imported module, reason)`. The check
/// fails when an entry no longer matches any import, so the list only
/// shrinks.
const TOLERATED: &[(&str, &str, &str)] = &[];

fn main_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

/// The module a source file belongs to; `None` for `lib.rs` and
/// `server/mod.rs`, which only declare modules.
fn module_of_file(rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["src", "main.rs"] => Some("main".to_owned()),
        ["src", "lib.rs"] | ["src", "server", "mod.rs"] => None,
        ["src", "server", file] => Some(format!("server::{}", file.trim_end_matches(".rs"))),
        ["src", "server", dir, ..] => Some(format!("server::{dir}")),
        ["src", top, ..] => Some(top.trim_end_matches(".rs").to_owned()),
        _ => None,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The modules named by the `crate::` path starting at `rest` (just after
/// `crate::`): `server::billing::x` → `server::billing`, `app::…` → `app`,
/// `server::{db, billing::y}` → both.
fn targets(rest: &str) -> Vec<String> {
    let first: String = rest.chars().take_while(|c| is_ident(*c)).collect();
    if first != "server" {
        return if first.is_empty() {
            Vec::new()
        } else {
            vec![first]
        };
    }
    let Some(after) = rest.strip_prefix("server::") else {
        return Vec::new();
    };
    if let Some(group) = after.strip_prefix('{') {
        let end = group.find('}').unwrap_or(group.len());
        return group[..end]
            .split(',')
            .map(|item| {
                item.trim()
                    .chars()
                    .take_while(|c| is_ident(*c))
                    .collect::<String>()
            })
            .filter(|m| !m.is_empty())
            .map(|m| format!("server::{m}"))
            .collect();
    }
    let second: String = after.chars().take_while(|c| is_ident(*c)).collect();
    if second.is_empty() {
        Vec::new()
    } else {
        vec![format!("server::{second}")]
    }
}

/// One import: where it is and what it names.
#[derive(Debug, Clone)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn imports() -> Vec<Import> {
    let root = main_dir();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .expect("under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        let Some(from) = module_of_file(&rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let mut search = 0;
            while let Some(pos) = line[search..].find("crate::") {
                let start = search + pos;
                search = start + "crate::".len();
                // `rsolv_platform::crate` cannot occur; skip `$crate::` and
                // identifiers ending in `crate` (`foo_crate::`).
                if line[..start]
                    .chars()
                    .next_back()
                    .is_some_and(|c| is_ident(c) || c == '$')
                {
                    continue;
                }
                // A `use crate::server::{…}` group may span lines.
                let mut rest = line[search..].to_owned();
                if rest.starts_with("server::{") && !rest.contains('}') {
                    for next in &lines[i + 1..] {
                        rest.push_str(next);
                        if next.contains('}') {
                            break;
                        }
                    }
                }
                for to in targets(&rest) {
                    if to != from {
                        out.push(Import {
                            file: rel.clone(),
                            line: i + 1,
                            from: from.clone(),
                            to,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Module → imported module → number of import sites.
fn graph(imports: &[Import]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut g: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for i in imports {
        *g.entry(i.from.clone())
            .or_default()
            .entry(i.to.clone())
            .or_default() += 1;
    }
    g
}

fn render(g: &BTreeMap<String, BTreeMap<String, usize>>) -> String {
    let mut s = String::new();
    for (layer_index, (layer, modules)) in LAYERS.iter().enumerate().rev() {
        let _ = writeln!(s, "[{layer_index} {layer}]");
        for m in *modules {
            let targets = g.get(*m).map_or_else(String::new, |t| {
                t.iter()
                    .map(|(to, n)| format!("{to} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let _ = writeln!(s, "  {m} -> {targets}");
        }
    }
    s
}

/// Strongly connected components (Tarjan) with more than one module.
fn cycles(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &str) {
            self.index.insert(v.to_owned(), self.next);
            self.low.insert(v.to_owned(), self.next);
            self.next += 1;
            self.stack.push(v.to_owned());
            self.on_stack.insert(v.to_owned());
            let succ: Vec<String> = self
                .edges
                .get(v)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for w in succ {
                if !self.index.contains_key(&w) {
                    self.visit(&w);
                    let low = self.low[v].min(self.low[&w]);
                    self.low.insert(v.to_owned(), low);
                } else if self.on_stack.contains(&w) {
                    let low = self.low[v].min(self.index[&w]);
                    self.low.insert(v.to_owned(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for n in nodes {
        if !t.index.contains_key(n) {
            t.visit(n);
        }
    }
    t.out
}

fn is_tolerated(tolerated: &[(&str, &str, &str)], i: &Import) -> bool {
    tolerated
        .iter()
        .any(|(file, to, _)| *file == i.file && *to == i.to)
}

/// Every broken rule, one line each.
fn violations(imports: &[Import], tolerated: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    for i in imports {
        let Some((from_layer, from_name)) = layer_of(&i.from) else {
            out.push(format!(
                "{}:{}: module {} has no layer: add it to LAYERS in tests/layers.rs",
                i.file, i.line, i.from
            ));
            continue;
        };
        let Some((to_layer, to_name)) = layer_of(&i.to) else {
            out.push(format!(
                "{}:{}: module {} has no layer: add it to LAYERS in tests/layers.rs",
                i.file, i.line, i.to
            ));
            continue;
        };
        if is_tolerated(tolerated, i) {
            continue;
        }
        if to_layer > from_layer {
            out.push(format!(
                "{}:{}: {} ({from_name}) imports {} ({to_name}): an import points up",
                i.file, i.line, i.from, i.to
            ));
        } else if to_layer == from_layer {
            if from_name == NO_PEER_IMPORTS {
                out.push(format!(
                    "{}:{}: {} ({from_name}) imports {} ({to_name}): an integration never imports another integration",
                    i.file, i.line, i.from, i.to
                ));
            }
            same_layer
                .entry(i.from.clone())
                .or_default()
                .insert(i.to.clone());
            nodes.insert(i.from.clone());
            nodes.insert(i.to.clone());
        }
        for (from, to, rule) in FORBIDDEN {
            if i.from == *from && i.to == *to {
                out.push(format!(
                    "{}:{}: {} imports {}: {rule}",
                    i.file, i.line, i.from, i.to
                ));
            }
        }
    }
    for component in cycles(&nodes, &same_layer) {
        let members: BTreeSet<&String> = component.iter().collect();
        let mut sites = String::new();
        for i in imports {
            if members.contains(&i.from) && members.contains(&i.to) && !is_tolerated(tolerated, i) {
                let _ = write!(sites, "\n    {}:{}: {} -> {}", i.file, i.line, i.from, i.to);
            }
        }
        out.push(format!(
            "cycle between modules of one layer: {}{sites}",
            component.join(" <-> ")
        ));
    }
    for (file, to, reason) in tolerated {
        if !imports.iter().any(|i| i.file == *file && i.to == *to) {
            out.push(format!(
                "tolerated violation {file} -> {to} ({reason}) no longer occurs: remove it from TOLERATED"
            ));
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers() {
    let imports = imports();
    assert!(
        imports.len() > 50,
        "found only {} imports: is the parser broken?",
        imports.len()
    );
    println!("module graph (module -> imported modules (import sites)), high layer first:");
    println!("{}", render(&graph(&imports)));
    for (file, to, reason) in TOLERATED {
        println!("tolerated for now: {file} -> {to}: {reason}");
    }
    let broken = violations(&imports, TOLERATED);
    assert!(
        broken.is_empty(),
        "{} layer rule(s) broken (STYLE.md § Layers; layers in tests/layers.rs):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_up_imports_groups_and_cycles() {
    let up = Import {
        file: "src/server/billing/x.rs".into(),
        line: 3,
        from: "server::billing".into(),
        to: "server::email".into(),
    };
    let v = violations(&[up], &[]);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("server::billing (domain) imports server::email (integration)"));

    assert_eq!(
        targets("server::{db, billing::ledger}, x"),
        vec!["server::db".to_owned(), "server::billing".to_owned()]
    );
    assert_eq!(targets("types::views::X"), vec!["types".to_owned()]);

    let a = |from: &str, to: &str| Import {
        file: "f.rs".into(),
        line: 1,
        from: from.into(),
        to: to.into(),
    };
    let v = violations(
        &[
            a("server::auth", "server::admin"),
            a("server::admin", "server::auth"),
        ],
        &[],
    );
    assert!(
        v.iter()
            .any(|l| l
                .starts_with("cycle between modules of one layer: server::admin <-> server::auth")),
        "{v:?}"
    );
    let v = violations(
        &[
            a("server::config", "server::flags"),
            a("server::flags", "server::config"),
        ],
        &[],
    );
    assert!(
        v.iter()
            .any(|l| l.contains("server::config <-> server::flags")),
        "{v:?}"
    );
    assert!(violations(
        &[
            a("server::stripe", "server::billing"),
            a("server::auth", "server::state")
        ],
        &[]
    )
    .is_empty());
    let v = violations(&[a("server::stripe", "server::email")], &[]);
    assert!(
        v.iter()
            .any(|l| l.contains("never imports another integration")),
        "{v:?}"
    );
    let v = violations(&[a("app", "server::http")], &[]);
    assert!(
        v.iter()
            .any(|l| l.contains("app never imports server::http")),
        "{v:?}"
    );
    assert_eq!(
        module_of_file("src/server/billing/fixes.rs").as_deref(),
        Some("server::billing")
    );
    assert_eq!(
        module_of_file("src/server/flags.rs").as_deref(),
        Some("server::flags")
    );
    assert_eq!(
        module_of_file("src/app/portal/api.rs").as_deref(),
        Some("app")
    );
    assert_eq!(module_of_file("src/main.rs").as_deref(), Some("main"));
}
