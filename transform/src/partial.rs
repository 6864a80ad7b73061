//! Running a program on only the parts of an event it touches.
//!
//! Building VRL's value tree from a whole event and printing it back costs several times what
//! a typical program does with it. VRL reports at compile time every event path a program
//! queries or assigns (a path-taking function such as `del` compiles its argument as a query,
//! and `get` reports the root), so the event is built only along those paths: a path's last
//! field is built whole, the objects above it hold only the fields on some path. After the
//! run, the output is the input's bytes with each touched member replaced by the program's
//! version (or left out when the program removed it), then the members the program added.
//! Untouched members keep their bytes and their order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use thoth_event::scan::{object_members, RawKey};
use thoth_event::Layout;
use vrl::compiler::Program;
use vrl::path::{OwnedSegment, PathPrefix};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::RunError;

/// The event fields a program touches, as a tree of field names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PathTree {
    /// The member is needed whole (a path ends here, or continues with an array index).
    whole: bool,
    children: BTreeMap<String, PathTree>,
}

impl PathTree {
    /// The paths `program` queries or assigns; `None` when it may touch the event as a whole
    /// (`.` itself, or a path starting with an index).
    pub fn of(program: &Program) -> Option<PathTree> {
        let info = program.info();
        let mut root = PathTree::default();
        for path in info.target_queries.iter().chain(&info.target_assignments) {
            if path.prefix != PathPrefix::Event {
                continue;
            }
            let mut node = &mut root;
            let mut fields = 0;
            for segment in &path.path.segments {
                match segment {
                    OwnedSegment::Field(name) => {
                        node = node.children.entry(name.to_string()).or_default();
                        fields += 1;
                    }
                    OwnedSegment::Index(_) => break,
                }
            }
            if fields == 0 {
                return None;
            }
            node.whole = true;
        }
        Some(root)
    }

    /// The top-level fields, sorted.
    pub fn top_level(&self) -> Vec<String> {
        self.children.keys().cloned().collect()
    }

    fn is_leaf(&self) -> bool {
        self.whole || self.children.is_empty()
    }
}

/// A member of a scanned object, and how the program's paths reach it.
struct Member<'a> {
    key: RawKey<'a>,
    raw: &'a [u8],
    touched: Touched<'a>,
}

enum Touched<'a> {
    /// On no path: copied as it is.
    No,
    /// Built whole.
    Whole,
    /// An object built along the paths of `tree`, with its own members.
    Inner(Vec<Member<'a>>),
}

impl PathTree {
    fn child(&self, key: &RawKey<'_>) -> Option<&PathTree> {
        if key.escaped {
            return self.children.get(key.decoded().as_ref());
        }
        // A handful of names per level: comparing bytes beats decoding the key.
        self.children
            .iter()
            .find(|(name, _)| name.as_bytes() == key.text)
            .map(|(_, node)| node)
    }
}

/// A member's value built whole.
fn whole_value(raw: &[u8]) -> Result<Value, RunError> {
    if let [b'"', content @ .., b'"'] = raw {
        if !content.contains(&b'\\') {
            if let Ok(text) = std::str::from_utf8(content) {
                return Ok(Value::from(text)); // the common case, without a parser
            }
        }
    }
    serde_json::from_slice(raw).map_err(|e| RunError::Input(e.to_string()))
}

fn is_object(raw: &[u8]) -> bool {
    raw.starts_with(b"{")
}

/// The members of the object `json`, found by a scan.
fn scanned(json: &[u8]) -> Result<impl Iterator<Item = (RawKey<'_>, &[u8])>, RunError> {
    object_members(json).ok_or_else(|| RunError::Input("not an object".into()))
}

/// Builds the object of `members` along `tree`.
fn build<'a>(
    members_in: impl Iterator<Item = (RawKey<'a>, &'a [u8])>,
    tree: &PathTree,
) -> Result<(Vec<Member<'a>>, ObjectMap), RunError> {
    let mut members = Vec::with_capacity(32);
    let mut object = ObjectMap::new();
    for (key, raw) in members_in {
        let touched = match tree.child(&key) {
            None => Touched::No,
            Some(node) if node.is_leaf() || !is_object(raw) => {
                object.insert(KeyString::from(key.decoded().as_ref()), whole_value(raw)?);
                Touched::Whole
            }
            Some(node) => {
                let (inner, value) = build(scanned(raw)?, node)?;
                object.insert(
                    KeyString::from(key.decoded().as_ref()),
                    Value::Object(value),
                );
                Touched::Inner(inner)
            }
        };
        members.push(Member { key, raw, touched });
    }
    Ok((members, object))
}

/// An event scanned and built along a program's paths, ready to run and merge back.
pub(crate) struct PartialEvent<'a> {
    members: Vec<Member<'a>>,
    /// The VRL object the program runs on.
    pub value: Value,
}

/// The event `json` (an object the gateway holds as valid JSON) built along `tree`; its
/// top-level members are taken from `layout` when given, else found by a scan.
pub(crate) fn partial_event<'a>(
    json: &'a [u8],
    layout: Option<&'a Layout>,
    tree: &PathTree,
) -> Result<PartialEvent<'a>, RunError> {
    let (members, object) = match layout {
        Some(layout) => build(layout.members(json), tree)?,
        None => build(scanned(json)?, tree)?,
    };
    Ok(PartialEvent {
        members,
        value: Value::Object(object),
    })
}

impl PartialEvent<'_> {
    /// Writes the event with the touched members taken from `output` (the program's version
    /// of the event), then the fields `output` added; `layout` records where its members went.
    pub(crate) fn write_merged(&self, out: &mut Vec<u8>, output: &ObjectMap, layout: &mut Layout) {
        write_merged(out, &self.members, output, Some(layout))
    }
}

/// Records the member just written (key text from `key_start`, value from `value_start`)
/// when the object's layout is being recorded.
fn record(layout: &mut Option<&mut Layout>, out: &[u8], key_start: usize, value_start: usize) {
    if let Some(layout) = layout {
        layout.push_written(out, key_start, value_start);
    }
}

fn write_merged(
    out: &mut Vec<u8>,
    members: &[Member<'_>],
    output: &ObjectMap,
    mut layout: Option<&mut Layout>,
) {
    if let Some(layout) = &mut layout {
        layout.begin(out.len());
    }
    out.push(b'{');
    let mut first = true;
    let mut written: Vec<Cow<'_, str>> = Vec::new();
    for member in members {
        if let Touched::No = member.touched {
            separator(out, &mut first);
            let key_start = out.len() + 1;
            write_raw_key(out, &member.key);
            let value_start = out.len();
            out.extend_from_slice(member.raw);
            record(&mut layout, out, key_start, value_start);
            continue;
        }
        let key = member.key.decoded();
        let Some(value) = output.get(key.as_ref()) else {
            continue; // removed by the program
        };
        if written.contains(&key) {
            continue; // a repeated key: VRL kept one value, and it is written once
        }
        separator(out, &mut first);
        let key_start = out.len() + 1;
        write_raw_key(out, &member.key);
        let value_start = out.len();
        match (&member.touched, value) {
            (Touched::Inner(inner), Value::Object(object)) => {
                write_merged(out, inner, object, None)
            }
            (_, value) => write_value(out, value),
        }
        record(&mut layout, out, key_start, value_start);
        written.push(key);
    }
    for (key, value) in output {
        if written.iter().any(|k| k.as_ref() == key.as_str()) {
            continue;
        }
        separator(out, &mut first);
        let key_start = out.len() + 1;
        write_key(out, key.as_str());
        let value_start = out.len();
        write_value(out, value);
        record(&mut layout, out, key_start, value_start);
    }
    out.push(b'}');
}

fn separator(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

fn write_raw_key(out: &mut Vec<u8>, key: &RawKey<'_>) {
    out.push(b'"');
    out.extend_from_slice(key.text);
    out.extend_from_slice(b"\":");
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
    out.push(b':');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(&mut *out, value).expect("a VRL value serializes to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VrlProgram;

    fn tree(src: &str) -> Option<PathTree> {
        PathTree::of(VrlProgram::compile("t", src).unwrap().0.program())
    }

    #[test]
    fn the_tree_holds_queried_and_assigned_paths() {
        let t = tree(".a = .b.c\ndel(.d)\n.e[0] = 1").unwrap();
        assert_eq!(t.top_level(), ["a", "b", "d", "e"]);
        assert!(t.children["a"].whole && t.children["d"].whole && t.children["e"].whole);
        assert!(!t.children["b"].whole);
        assert!(t.children["b"].children["c"].whole);
    }

    #[test]
    fn the_root_or_a_leading_index_means_the_whole_event() {
        assert_eq!(tree("keys(.)"), None);
        assert_eq!(tree(". = {}"), None);
        assert_eq!(tree(".x = get!(., [\"a\"])"), None);
        assert_eq!(tree("del(.)"), None);
    }

    #[test]
    fn only_the_paths_are_built() {
        let t = tree(".x = .b.c").unwrap();
        let json = br#"{"a":1,"b":{"c":{"d":[1,2]},"e":"skipped"},"f":true}"#;
        let event = partial_event(json, None, &t).unwrap();
        assert_eq!(
            serde_json::to_string(&event.value).unwrap(),
            r#"{"b":{"c":{"d":[1,2]}}}"#
        );
    }
}

#[cfg(test)]
mod equivalence {
    use crate::{json_to_value, VrlProgram};

    /// Programs that touch the event in every way a path can: reads, nested writes, deletes,
    /// writes below non-objects, whole-member replacement, merges and iteration.
    const PROGRAMS: &[&str] = &[
        ".severity_score = if .risk == \"critical\" { 4 } else { 1 }\n.fleet = .context.fleet.id\n.owner = downcase(string(.context.endpoint.owner) ?? \"\")\ndel(.proxy_version)\n.gateway = \"thoth\"",
        ".context.fleet.id = \"moved\"",
        ".context.endpoint.extra.deep = [1, 2]",
        "del(.context.endpoint.owner)",
        "del(.context)",
        ".context = {\"replaced\": true}",
        ".context = object(.context) ?? {}\n.context |= {\"merged\": .risk}",
        ".tags[1] = \"x\"",
        "c = object(.context) ?? {}\n.n = length(keys(c))",
        ".new.nested.path = 1\n.risk = null",
        "del(.context.fleet)\n.context.fleet.id = 7",
        ".copy = .context\n.context.endpoint = \"flat\"",
        ".x = .risk.sub",
        "if exists(.tags) { .count = length(.tags) ?? 0 }",
        ".a = 1\n. = merge(., {\"b\": 2})",
        "abort",
    ];

    const EVENTS: &[&str] = &[
        r#"{"type":"decision","risk":"critical","proxy_version":"1.2","n":1.50e3,"context":{"fleet":{"id":"eng","name":"E"},"endpoint":{"owner":"Ada","id":"ep"}},"tags":["a","b"]}"#,
        r#"{"type":"decision","risk":"low","context":"a string"}"#,
        r#"{"type":"checkin","context":{"fleet":null,"endpoint":{"owner":5}},"zzz":{"k":[{"x":1}]}}"#,
        r#"{"risk":{"sub":"deep"},"context":{"endpoint":[1,2,3]},"tags":"not an array"}"#,
        r#"{}"#,
        r#"{"ris\u006b":"critical","context":{"fle\u0065t":{"id":"x\"y"}},"proxy_version":"a\nb"}"#,
    ];

    fn full(program: &VrlProgram, json: &[u8]) -> Result<serde_json::Value, String> {
        let (event, _) = program
            .run(json_to_value(json).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(&event).unwrap())
    }

    fn partial(program: &VrlProgram, json: &[u8]) -> Result<serde_json::Value, String> {
        let out = program.remap_json(json).map_err(|e| e.to_string())?;
        Ok(serde_json::from_slice(&out).expect("the merged output is valid JSON"))
    }

    #[test]
    fn partial_remap_gives_what_a_full_conversion_gives() {
        for source in PROGRAMS {
            let (program, _) = VrlProgram::compile("t", source).unwrap();
            for event in EVENTS {
                assert_eq!(
                    partial(&program, event.as_bytes()),
                    full(&program, event.as_bytes()),
                    "program {source:?} on {event}"
                );
            }
        }
    }

    /// The layout of `json` as a writer would have recorded it.
    fn scanned_layout(json: &[u8]) -> thoth_event::Layout {
        let mut layout = thoth_event::Layout::default();
        layout.begin(0);
        for (key, value) in thoth_event::scan::object_members(json).unwrap() {
            let at = |s: &[u8]| s.as_ptr() as usize - json.as_ptr() as usize;
            let (key_start, value_start) = (at(key.text), at(value));
            layout.push(
                key_start..key_start + key.text.len(),
                key.escaped,
                value_start..value_start + value.len(),
            );
        }
        layout
    }

    #[test]
    fn a_laid_out_event_remaps_the_same_and_the_output_layout_is_exact() {
        let mut out_layout = thoth_event::Layout::default();
        for source in PROGRAMS {
            let (program, _) = VrlProgram::compile("t", source).unwrap();
            for event in EVENTS {
                let scanned = program.remap_json(event.as_bytes());
                let mut out = b"prefix".to_vec();
                let laid_out = program
                    .remap_laid_out_into(
                        event.as_bytes(),
                        &scanned_layout(event.as_bytes()),
                        &mut out,
                        &mut out_layout,
                    )
                    .map(|()| out[6..].to_vec());
                assert_eq!(
                    laid_out.as_ref().map_err(|e| e.to_string()),
                    scanned.as_ref().map_err(|e| e.to_string()),
                    "program {source:?} on {event}"
                );
                if let Ok(json) = laid_out {
                    let recorded: Vec<_> = out_layout.members(&json).collect();
                    let found: Vec<_> = thoth_event::scan::object_members(&json).unwrap().collect();
                    // Empty: unknown (the program rebuilt the event as a whole).
                    if !out_layout.is_empty() {
                        assert_eq!(recorded, found, "program {source:?} on {event}");
                    } else {
                        assert!(program.touched.is_none() || found.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn untouched_members_keep_their_bytes_and_order() {
        let (program, _) = VrlProgram::compile("t", ".b = 2\ndel(.c)").unwrap();
        let out = program
            .remap_json(br#"{"z":1.50e3,"c":0,"a":{"x":[1, 2]},"b":1}"#)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":1.50e3,"a":{"x":[1, 2]},"b":2}"#
        );
    }
}
