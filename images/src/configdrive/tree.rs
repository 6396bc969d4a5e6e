//! Input checks and the directory tree: each path becomes nodes with two names, the primary
//! volume's ISO 9660 level-1 name (`META_DAT.JSO;1`) and the Joliet name (`meta_data.json`).

use super::ConfigDriveError;
use std::collections::{HashMap, HashSet};

/// Most levels in an ISO 9660 hierarchy (ECMA-119 6.8.2.1), the root being the first.
pub(super) const MAX_DEPTH: usize = 8;
/// Joliet names hold at most 64 UCS-2 characters.
pub(super) const MAX_NAME_UNITS: usize = 64;
/// ISO 9660 limits a full path to 255 characters.
pub(super) const MAX_PATH_BYTES: usize = 255;
/// Bounds the metadata we build in memory; a config drive holds a handful of files.
pub(super) const MAX_ENTRIES: usize = 4096;

/// One file or directory.
pub(super) struct Node {
    /// Primary-volume identifier: `NAME.EXT;1` for files, `NAME` for directories.
    pub iso_name: Vec<u8>,
    /// Joliet identifier, UCS-2 big-endian, no version suffix (as genisoimage writes it).
    pub joliet_name: Vec<u8>,
    pub kind: Kind,
}

pub(super) enum Kind {
    Dir {
        children: Vec<usize>,
    },
    /// Index into the caller's file list.
    File {
        data: usize,
    },
}

/// Node 0 is the root directory.
pub(super) struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Builds the tree from the caller's paths, checking each.
    pub fn build(files: &[(&str, &[u8])]) -> Result<Self, ConfigDriveError> {
        let mut tree = Tree {
            nodes: vec![Node {
                iso_name: vec![0],
                joliet_name: vec![0],
                kind: Kind::Dir {
                    children: Vec::new(),
                },
            }],
        };
        for (index, (path, _)) in files.iter().enumerate() {
            let components = split_path(path)?;
            let mut dir = 0;
            for (i, name) in components.iter().enumerate() {
                let last = i + 1 == components.len();
                dir = tree.child(dir, name, last.then_some(index), path)?;
            }
        }
        for id in 0..tree.nodes.len() {
            tree.assign_iso_names(id);
            tree.sort_children(id);
        }
        Ok(tree)
    }

    /// Finds or makes the child `name` of `dir`; `file` is set for the path's last component.
    fn child(
        &mut self,
        dir: usize,
        name: &str,
        file: Option<usize>,
        path: &str,
    ) -> Result<usize, ConfigDriveError> {
        let joliet = ucs2(name);
        let Kind::Dir { children } = &self.nodes[dir].kind else {
            return Err(ConfigDriveError::PathConflict {
                path: path.to_owned(),
            });
        };
        if let Some(&existing) = children
            .iter()
            .find(|&&c| self.nodes[c].joliet_name == joliet)
        {
            return match (&self.nodes[existing].kind, file) {
                (Kind::Dir { .. }, None) => Ok(existing),
                (Kind::File { .. }, Some(_)) => Err(ConfigDriveError::DuplicatePath {
                    path: path.to_owned(),
                }),
                _ => Err(ConfigDriveError::PathConflict {
                    path: path.to_owned(),
                }),
            };
        }
        if self.nodes.len() >= MAX_ENTRIES {
            return Err(ConfigDriveError::TooManyEntries { max: MAX_ENTRIES });
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            iso_name: Vec::new(),
            joliet_name: joliet,
            kind: match file {
                Some(data) => Kind::File { data },
                None => Kind::Dir {
                    children: Vec::new(),
                },
            },
        });
        if let Kind::Dir { children } = &mut self.nodes[dir].kind {
            children.push(id);
        }
        Ok(id)
    }

    /// Gives the children of `dir` level-1 names, unique within the directory.
    fn assign_iso_names(&mut self, dir: usize) {
        // Joliet order, so that the names do not depend on the order of the caller's list.
        let children = self.children(dir, true);
        let mut used: HashSet<Vec<u8>> = HashSet::with_capacity(children.len());
        // The next counter per clashing name, so that many clashes cost linear time.
        let mut counters: HashMap<Vec<u8>, u32> = HashMap::new();
        for id in children {
            let is_file = matches!(self.nodes[id].kind, Kind::File { .. });
            let joliet = String::from_utf16_lossy(
                &self.nodes[id]
                    .joliet_name
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            );
            let (base, ext) = level1_parts(&joliet, is_file);
            let plain = compose(&base, &ext, is_file);
            let mut name = plain.clone();
            // genisoimage's scheme: replace the end of the base name with a counter.
            while used.contains(&name) {
                let counter = counters.entry(plain.clone()).or_insert(0);
                let digits = format!("{counter:03}");
                *counter += 1;
                let keep = 8usize.saturating_sub(digits.len()).min(base.len());
                let mut numbered = base[..keep].to_vec();
                numbered.extend_from_slice(digits.as_bytes());
                name = compose(&numbered, &ext, is_file);
            }
            used.insert(name.clone());
            self.nodes[id].iso_name = name;
        }
    }

    fn sort_children(&mut self, dir: usize) {
        let nodes = &self.nodes;
        let Kind::Dir { children } = &nodes[dir].kind else {
            return;
        };
        let mut sorted = children.clone();
        sorted.sort_by(|&a, &b| nodes[a].iso_name.cmp(&nodes[b].iso_name));
        if let Kind::Dir { children } = &mut self.nodes[dir].kind {
            *children = sorted;
        }
    }

    /// The children of `dir`, in primary order (`joliet` false) or Joliet order.
    pub fn children(&self, dir: usize, joliet: bool) -> Vec<usize> {
        let Kind::Dir { children } = &self.nodes[dir].kind else {
            return Vec::new();
        };
        let mut list = children.clone();
        if joliet {
            list.sort_by(|&a, &b| self.nodes[a].joliet_name.cmp(&self.nodes[b].joliet_name));
        }
        list
    }

    /// The directories in path-table order: by level, then parent, then name.
    pub fn dirs_breadth_first(&self, joliet: bool) -> Vec<(usize, usize)> {
        let mut order = vec![(0usize, 0usize)];
        let mut next = 0;
        while next < order.len() {
            let (dir, _) = order[next];
            for child in self.children(dir, joliet) {
                if matches!(self.nodes[child].kind, Kind::Dir { .. }) {
                    order.push((child, next));
                }
            }
            next += 1;
        }
        order
    }
}

/// Checks a path and splits it into components.
fn split_path(path: &str) -> Result<Vec<&str>, ConfigDriveError> {
    let bad = |reason: &str| ConfigDriveError::BadPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("empty path"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(&format!("longer than {MAX_PATH_BYTES} bytes")));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_DEPTH {
        return Err(bad(&format!(
            "more than {} directory levels (ISO 9660 allows {MAX_DEPTH} with the root)",
            MAX_DEPTH - 1
        )));
    }
    for c in &components {
        check_component(c).map_err(|reason| bad(&reason))?;
    }
    Ok(components)
}

fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty component (leading, trailing or doubled '/')".into());
    }
    if c == "." || c == ".." {
        return Err(format!("component {c:?} is not allowed"));
    }
    if let Some(ch) = c
        .chars()
        .find(|&ch| ch.is_control() || "*:;?\\".contains(ch))
    {
        return Err(format!("character {ch:?} is not allowed in Joliet names"));
    }
    if let Some(ch) = c.chars().find(|&ch| u32::from(ch) > 0xffff) {
        return Err(format!("character {ch:?} is outside UCS-2"));
    }
    let units = c.chars().count();
    if units > MAX_NAME_UNITS {
        return Err(format!(
            "component {c:?} has {units} characters, Joliet allows {MAX_NAME_UNITS}"
        ));
    }
    Ok(())
}

fn ucs2(name: &str) -> Vec<u8> {
    name.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Maps a character to an ISO 9660 d-character (A-Z 0-9 _).
fn d_char(ch: char) -> u8 {
    match ch.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9') => c as u8,
        _ => b'_',
    }
}

/// Level-1 base (8) and extension (3) for a name; directories have no extension.
fn level1_parts(name: &str, is_file: bool) -> (Vec<u8>, Vec<u8>) {
    let (base, ext) = match name.rfind('.') {
        Some(i) if is_file && i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let base: Vec<u8> = base.chars().map(d_char).take(8).collect();
    let ext: Vec<u8> = ext.chars().map(d_char).take(3).collect();
    (base, ext)
}

fn compose(base: &[u8], ext: &[u8], is_file: bool) -> Vec<u8> {
    let mut name = base.to_vec();
    if is_file {
        name.push(b'.');
        name.extend_from_slice(ext);
        name.extend_from_slice(b";1");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(tree: &Tree, dir: usize) -> Vec<String> {
        tree.children(dir, false)
            .iter()
            .map(|&c| String::from_utf8_lossy(&tree.nodes[c].iso_name).into_owned())
            .collect()
    }

    #[test]
    fn level1_names_are_unique_and_sorted() {
        let files: &[(&str, &[u8])] = &[
            ("openstack/latest/vendor_data2.json", b""),
            ("openstack/latest/vendor_data.json", b""),
            ("openstack/latest/user_data", b""),
            ("ec2/2009-04-04/meta-data.json", b""),
        ];
        let tree = Tree::build(files).unwrap();
        assert_eq!(names_of(&tree, 0), ["EC2", "OPENSTAC"]);
        let latest = tree.dirs_breadth_first(false)[4].0;
        assert_eq!(
            names_of(&tree, latest),
            ["USER_DAT.;1", "VENDO000.JSO;1", "VENDOR_D.JSO;1"]
        );
    }

    #[test]
    fn thousands_of_clashing_names_stay_unique() {
        let names: Vec<String> = (0..4000).map(|i| format!("same_name_{i}.json")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let tree = Tree::build(&files).unwrap();
        let mut iso = names_of(&tree, 0);
        assert_eq!(iso.len(), 4000);
        iso.dedup();
        assert_eq!(iso.len(), 4000, "unique");
        assert!(
            iso.iter().all(|n| n.len() <= 14 && n.ends_with(".JSO;1")),
            "{iso:?}"
        );
    }

    #[test]
    fn breadth_first_lists_parents_by_table_index() {
        let tree = Tree::build(&[("a/b/c", b"".as_slice()), ("d/e", b"")]).unwrap();
        let order = tree.dirs_breadth_first(true);
        let parents: Vec<usize> = order.iter().map(|&(_, p)| p).collect();
        assert_eq!(parents, [0, 0, 0, 1]);
    }
}
