//! Which path, relative to the share root, each FUSE node id stands for.
//!
//! The guest names files by node id (inode numbers handed out by `PassthroughFs` in its
//! `Entry` replies), but the policy decides on paths. [`PathMap`] keeps, for every node the
//! guest knows, the `(parent node, name)` links under which it was seen, and works a node's
//! path out by walking those links up to the root. Because a directory's children link to the
//! directory's node, not to its path, renaming an ancestor moves every descendant with it, and a
//! directory created later under the old name is a different node with its own path.
//!
//! Called by `backend.rs` under one mutex: names are recorded from the replies of
//! lookup/create/mkdir/mknod/symlink/link (keyed by the node returned), moved on rename,
//! dropped on unlink/rmdir and when the kernel forgets a node. Paths are canonical: relative,
//! `/`-separated, never containing `.`, `..` or empty components. Names are checked by
//! [`validate_name`] before anything else touches them.
//!
//! Every node is counted the way the kernel counts it (one per `Entry` reply, minus
//! `forget`). A node the kernel forgot stays as long as other nodes link to it, so that its
//! descendants keep their paths; a node whose last name was removed (unlinked but still open)
//! remembers its last paths, so that an unlinked `deny_read` file stays unreadable. A node
//! whose path cannot be worked out yields an error, and the caller denies.

use std::collections::HashMap;

/// The FUSE node id of the share root.
pub const ROOT_INODE: u64 = 1;
/// Longest name accepted, in bytes (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Longest path worked out, in bytes (`PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Most names tracked for one node (hard links, and stale links seen from the host side).
pub const MAX_ALIASES: usize = 8;
/// Most steps taken when walking up from one node; bounds the work for any link structure.
const MAX_WALK_STEPS: usize = 4 * MAX_PATH_LEN;

/// Why a name in a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Zero bytes long.
    #[error("empty name")]
    Empty,
    /// `.` or `..`.
    #[error("name is `.` or `..`")]
    Dot,
    /// Contains `/`: a name is one path component.
    #[error("name contains `/`")]
    Slash,
    /// Contains a NUL byte.
    #[error("name contains a NUL byte")]
    Nul,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// Not UTF-8; the policy matches UTF-8 paths, so such names cannot be decided.
    #[error("name is not UTF-8")]
    NotUtf8,
}

/// Checks that `name` is one component the policy can match, and returns it as text.
pub fn validate_name(name: &[u8]) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if name == b"." || name == b".." {
        return Err(NameError::Dot);
    }
    if name.contains(&b'/') {
        return Err(NameError::Slash);
    }
    if name.contains(&0) {
        return Err(NameError::Nul);
    }
    std::str::from_utf8(name).map_err(|_| NameError::NotUtf8)
}

/// Why a node's path is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The node id was never handed out, or has been forgotten.
    #[error("unknown node {0}")]
    UnknownNode(u64),
    /// The node's links do not lead to the share root.
    #[error("node {0} is not connected to the share root")]
    Detached(u64),
    /// More names than [`MAX_ALIASES`].
    #[error("node {0} has more than {MAX_ALIASES} names")]
    TooManyAliases(u64),
    /// The path would be longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
}

#[derive(Debug, Default)]
struct Node {
    /// `(parent node, name)` links under which the node is known.
    links: Vec<(u64, String)>,
    /// Kernel lookup count: `Entry` replies minus forgets.
    lookups: u64,
    /// Number of links of other nodes that point to this one as parent.
    children: u64,
    /// Paths the node had when its last link was removed (unlinked but still referenced).
    ghost: Vec<String>,
    /// More links were seen than are tracked: the path set is incomplete, so decide nothing.
    overflow: bool,
}

/// Node id → links, plus the reverse index (parent, name) → node.
#[derive(Debug)]
pub struct PathMap {
    nodes: HashMap<u64, Node>,
    dentries: HashMap<u64, HashMap<String, u64>>,
}

impl Default for PathMap {
    fn default() -> Self {
        Self::new()
    }
}

impl PathMap {
    /// A map that knows only the root.
    pub fn new() -> Self {
        let mut map = Self {
            nodes: HashMap::new(),
            dentries: HashMap::new(),
        };
        map.reset();
        map
    }

    /// Forgets everything but the root (FUSE `INIT` and `DESTROY`).
    pub fn reset(&mut self) {
        self.nodes.clear();
        self.dentries.clear();
        self.nodes.insert(
            ROOT_INODE,
            Node {
                lookups: 1,
                ..Node::default()
            },
        );
    }

    /// Whether the guest may use `ino`: the root, or a node with a positive lookup count.
    pub fn is_live(&self, ino: u64) -> bool {
        ino == ROOT_INODE || self.nodes.get(&ino).is_some_and(|n| n.lookups > 0)
    }

    /// Number of nodes tracked, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root is always tracked.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node currently linked as `name` in `parent`, if known.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.dentries.get(&parent)?.get(name).copied()
    }

    /// Every path of a live node, sorted; the root's is `""`.
    pub fn paths(&self, ino: u64) -> Result<Vec<String>, PathError> {
        if !self.is_live(ino) {
            return Err(PathError::UnknownNode(ino));
        }
        self.walk(ino)
    }

    /// The paths `name` would have in the live directory `parent`.
    pub fn child_paths(&self, parent: u64, name: &str) -> Result<Vec<String>, PathError> {
        let mut out = Vec::new();
        for p in self.paths(parent)? {
            let path = if p.is_empty() {
                name.to_owned()
            } else {
                format!("{p}/{name}")
            };
            if path.len() > MAX_PATH_LEN {
                return Err(PathError::TooLong);
            }
            out.push(path);
        }
        Ok(out)
    }

    /// Walks links up to the root. Links are followed from any tracked node (forgotten
    /// ancestors included); a node without links ends the walk at its ghost paths.
    fn walk(&self, ino: u64) -> Result<Vec<String>, PathError> {
        let mut out: Vec<String> = Vec::new();
        let mut steps = 0usize;
        // (node, components gathered so far from the leaf upwards, their length with slashes)
        let mut stack: Vec<(u64, Vec<&str>, usize)> = vec![(ino, Vec::new(), 0)];
        while let Some((mut id, mut comps, mut len)) = stack.pop() {
            loop {
                steps += 1;
                if steps > MAX_WALK_STEPS {
                    return Err(PathError::TooLong);
                }
                if id == ROOT_INODE {
                    out.push(join_reversed(None, &comps));
                    break;
                }
                let node = self.nodes.get(&id).ok_or(PathError::Detached(ino))?;
                if node.overflow {
                    return Err(PathError::TooManyAliases(id));
                }
                let Some(((parent, name), rest)) = node.links.split_first() else {
                    if node.ghost.is_empty() {
                        return Err(PathError::Detached(ino));
                    }
                    for g in &node.ghost {
                        let path = join_reversed(Some(g), &comps);
                        if path.len() > MAX_PATH_LEN {
                            return Err(PathError::TooLong);
                        }
                        out.push(path);
                    }
                    break;
                };
                for (p, n) in rest {
                    let mut c = comps.clone();
                    c.push(n.as_str());
                    stack.push((*p, c, len + n.len() + 1));
                }
                len += name.len() + 1;
                if len > MAX_PATH_LEN + 1 {
                    return Err(PathError::TooLong);
                }
                comps.push(name.as_str());
                id = *parent;
            }
            if out.len() > MAX_ALIASES {
                return Err(PathError::TooManyAliases(ino));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Records an `Entry` reply: `child` is known as `name` in `parent`, and the kernel holds
    /// one more reference to it. Id 0 (a negative entry) and the root are not recorded.
    pub fn insert(&mut self, parent: u64, name: &str, child: u64) {
        if child == 0 || child == ROOT_INODE {
            return;
        }
        let node = self.nodes.entry(child).or_default();
        node.lookups = node.lookups.saturating_add(1);
        match self.child(parent, name) {
            Some(existing) if existing == child => return,
            Some(other) => {
                // The host changed behind our back: the name now means another node.
                self.detach(other, parent, name);
            }
            None => {}
        }
        self.add_link(child, parent, name);
    }

    /// The kernel dropped `count` references to `ino` (`FORGET`, `BATCH_FORGET`).
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INODE {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
            self.maybe_remove(ino);
        }
    }

    /// `name` was removed from `parent` (unlink, rmdir).
    pub fn remove(&mut self, parent: u64, name: &str) {
        if let Some(child) = self.child(parent, name) {
            self.detach(child, parent, name);
        }
    }

    /// `oldname` in `olddir` was renamed to `newname` in `newdir`; with `exchange`
    /// (`RENAME_EXCHANGE`) the two names swapped nodes.
    pub fn rename(
        &mut self,
        olddir: u64,
        oldname: &str,
        newdir: u64,
        newname: &str,
        exchange: bool,
    ) {
        let moved = self.child(olddir, oldname);
        let other = self.child(newdir, newname);
        if exchange {
            if let Some(m) = moved {
                self.remove_link(m, olddir, oldname);
            }
            if let Some(o) = other {
                self.remove_link(o, newdir, newname);
            }
            if let Some(m) = moved {
                self.add_link(m, newdir, newname);
            }
            if let Some(o) = other {
                self.add_link(o, olddir, oldname);
            }
        } else {
            // rename(2) of two names of the same file does nothing.
            if moved.is_some() && moved == other {
                return;
            }
            if let Some(o) = other {
                self.detach(o, newdir, newname);
            }
            if let Some(m) = moved {
                self.remove_link(m, olddir, oldname);
                self.add_link(m, newdir, newname);
            }
        }
        self.maybe_remove(olddir);
        self.maybe_remove(newdir);
    }

    /// Removes one link of `child`, remembering its paths if it was the last, and drops
    /// whatever is no longer referenced.
    fn detach(&mut self, child: u64, parent: u64, name: &str) {
        let before = self.walk(child).unwrap_or_default();
        self.remove_link(child, parent, name);
        if let Some(node) = self.nodes.get_mut(&child)
            && node.links.is_empty()
        {
            node.ghost = before;
        }
        self.maybe_remove(child);
        self.maybe_remove(parent);
    }

    fn add_link(&mut self, child: u64, parent: u64, name: &str) {
        if !self.nodes.contains_key(&parent) {
            return;
        }
        let Some(node) = self.nodes.get_mut(&child) else {
            return;
        };
        if node.links.iter().any(|(p, n)| *p == parent && n == name) {
            return;
        }
        if node.links.len() >= MAX_ALIASES {
            node.overflow = true;
            return;
        }
        node.links.push((parent, name.to_owned()));
        node.ghost.clear();
        self.dentries
            .entry(parent)
            .or_default()
            .insert(name.to_owned(), child);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_add(1);
        }
    }

    fn remove_link(&mut self, child: u64, parent: u64, name: &str) {
        let Some(node) = self.nodes.get_mut(&child) else {
            return;
        };
        let before = node.links.len();
        node.links.retain(|(p, n)| !(*p == parent && n == name));
        if node.links.len() == before {
            return;
        }
        if let Some(names) = self.dentries.get_mut(&parent) {
            if names.get(name) == Some(&child) {
                names.remove(name);
            }
            if names.is_empty() {
                self.dentries.remove(&parent);
            }
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
    }

    /// Drops `ino` if neither the kernel nor any other node refers to it, then its parents.
    fn maybe_remove(&mut self, ino: u64) {
        let mut work = vec![ino];
        while let Some(id) = work.pop() {
            if id == ROOT_INODE {
                continue;
            }
            let unused = self
                .nodes
                .get(&id)
                .is_some_and(|n| n.lookups == 0 && n.children == 0);
            if !unused {
                continue;
            }
            let Some(node) = self.nodes.remove(&id) else {
                continue;
            };
            for (parent, name) in node.links {
                if let Some(names) = self.dentries.get_mut(&parent) {
                    if names.get(&name) == Some(&id) {
                        names.remove(&name);
                    }
                    if names.is_empty() {
                        self.dentries.remove(&parent);
                    }
                }
                if let Some(p) = self.nodes.get_mut(&parent) {
                    p.children = p.children.saturating_sub(1);
                }
                work.push(parent);
            }
        }
    }
}

/// Joins components gathered leaf-first into a root-first path, under `prefix` if given.
fn join_reversed(prefix: Option<&str>, comps: &[&str]) -> String {
    let mut out = String::new();
    if let Some(p) = prefix {
        out.push_str(p);
    }
    for c in comps.iter().rev() {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(map: &PathMap, ino: u64) -> Vec<String> {
        map.paths(ino).unwrap()
    }

    #[test]
    fn names_are_single_utf8_components() {
        assert_eq!(validate_name(b"file.txt"), Ok("file.txt"));
        assert_eq!(validate_name(b"..."), Ok("..."));
        assert_eq!(validate_name(b"a\\b"), Ok("a\\b"));
        assert_eq!(validate_name(b""), Err(NameError::Empty));
        assert_eq!(validate_name(b"."), Err(NameError::Dot));
        assert_eq!(validate_name(b".."), Err(NameError::Dot));
        assert_eq!(validate_name(b"a/b"), Err(NameError::Slash));
        assert_eq!(validate_name(b"/etc"), Err(NameError::Slash));
        assert_eq!(validate_name(b"../x"), Err(NameError::Slash));
        assert_eq!(validate_name(b"a\0b"), Err(NameError::Nul));
        assert_eq!(validate_name(b"\xff\xfe"), Err(NameError::NotUtf8));
        assert_eq!(validate_name(&[b'a'; 255]).map(str::len), Ok(255));
        assert_eq!(validate_name(&[b'a'; 256]), Err(NameError::TooLong));
    }

    #[test]
    fn root_is_empty_path_and_unknown_ids_are_errors() {
        let map = PathMap::new();
        assert_eq!(paths(&map, ROOT_INODE), vec![String::new()]);
        assert_eq!(map.paths(0), Err(PathError::UnknownNode(0)));
        assert_eq!(map.paths(42), Err(PathError::UnknownNode(42)));
        assert_eq!(map.paths(u64::MAX), Err(PathError::UnknownNode(u64::MAX)));
        assert_eq!(map.child_paths(7, "x"), Err(PathError::UnknownNode(7)));
        assert_eq!(map.child_paths(ROOT_INODE, "x").unwrap(), vec!["x"]);
    }

    #[test]
    fn lookups_build_nested_paths() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, ".git", 2);
        map.insert(2, "hooks", 3);
        map.insert(3, "pre-commit", 4);
        assert_eq!(paths(&map, 4), vec![".git/hooks/pre-commit"]);
        assert_eq!(map.child_paths(3, "x").unwrap(), vec![".git/hooks/x"]);
    }

    #[test]
    fn renaming_an_ancestor_moves_descendants_and_frees_the_old_name() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, ".git", 2);
        map.insert(2, "hooks", 3);
        map.insert(3, "pre-commit", 4);
        map.rename(ROOT_INODE, ".git", ROOT_INODE, ".g", false);
        assert_eq!(paths(&map, 2), vec![".g"]);
        assert_eq!(paths(&map, 4), vec![".g/hooks/pre-commit"]);
        assert_eq!(map.child(ROOT_INODE, ".git"), None);
        // mkdir -p .git/hooks again: new nodes, and the old name's path for new children.
        map.insert(ROOT_INODE, ".git", 10);
        map.insert(10, "hooks", 11);
        assert_eq!(
            map.child_paths(11, "pre-commit").unwrap(),
            vec![".git/hooks/pre-commit"]
        );
        assert_eq!(paths(&map, 4), vec![".g/hooks/pre-commit"]);
    }

    #[test]
    fn rename_over_an_existing_name_ghosts_the_victim() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "a", 2);
        map.insert(ROOT_INODE, "b", 3);
        map.rename(ROOT_INODE, "a", ROOT_INODE, "b", false);
        assert_eq!(paths(&map, 2), vec!["b"]);
        // the replaced file is still open somewhere: it keeps its last path
        assert_eq!(paths(&map, 3), vec!["b"]);
        assert_eq!(map.child(ROOT_INODE, "b"), Some(2));
        map.forget(3, 1);
        assert_eq!(map.paths(3), Err(PathError::UnknownNode(3)));
    }

    #[test]
    fn rename_exchange_swaps() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "d", 2);
        map.insert(2, "x", 3);
        map.insert(ROOT_INODE, "y", 4);
        map.rename(2, "x", ROOT_INODE, "y", true);
        assert_eq!(paths(&map, 3), vec!["y"]);
        assert_eq!(paths(&map, 4), vec!["d/x"]);
    }

    #[test]
    fn rename_between_two_links_of_one_file_does_nothing() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "a", 2);
        map.insert(ROOT_INODE, "b", 2);
        map.rename(ROOT_INODE, "a", ROOT_INODE, "b", false);
        assert_eq!(paths(&map, 2), vec!["a", "b"]);
    }

    #[test]
    fn unlinked_node_keeps_its_last_path_until_forgotten() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "secret", 2);
        map.remove(ROOT_INODE, "secret");
        assert_eq!(map.child(ROOT_INODE, "secret"), None);
        assert_eq!(paths(&map, 2), vec!["secret"]);
        map.forget(2, 1);
        assert!(!map.is_live(2));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn hard_links_give_every_path() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "d", 2);
        map.insert(ROOT_INODE, "a", 3);
        map.insert(2, "b", 3);
        assert_eq!(paths(&map, 3), vec!["a", "d/b"]);
        map.remove(ROOT_INODE, "a");
        assert_eq!(paths(&map, 3), vec!["d/b"]);
    }

    #[test]
    fn too_many_links_fail_closed() {
        let mut map = PathMap::new();
        for i in 0..=MAX_ALIASES {
            map.insert(ROOT_INODE, &format!("n{i}"), 2);
        }
        assert_eq!(map.paths(2), Err(PathError::TooManyAliases(2)));
    }

    #[test]
    fn forgetting_a_parent_keeps_it_for_its_children() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, ".git", 2);
        map.insert(2, "hooks", 3);
        map.forget(2, 1);
        assert!(!map.is_live(2));
        assert_eq!(map.paths(2), Err(PathError::UnknownNode(2)));
        assert_eq!(paths(&map, 3), vec![".git/hooks"]);
        map.forget(3, 1);
        assert_eq!(map.len(), 1, "child and then parent dropped");
    }

    #[test]
    fn forget_is_counted_and_saturates() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "a", 2);
        map.insert(ROOT_INODE, "a", 2);
        map.forget(2, 1);
        assert!(map.is_live(2));
        map.forget(2, u64::MAX);
        assert!(!map.is_live(2));
        map.forget(2, 1);
        map.forget(999, 1);
        map.forget(ROOT_INODE, u64::MAX);
        assert!(map.is_live(ROOT_INODE));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn bogus_ids_never_panic() {
        let mut map = PathMap::new();
        map.insert(999, "x", 5);
        assert_eq!(map.paths(5), Err(PathError::Detached(5)));
        map.insert(ROOT_INODE, "y", 0);
        map.insert(ROOT_INODE, "z", ROOT_INODE);
        assert_eq!(map.child(ROOT_INODE, "y"), None);
        map.remove(12345, "nope");
        map.rename(777, "a", 888, "b", false);
        map.rename(777, "a", 888, "b", true);
        assert_eq!(paths(&map, ROOT_INODE), vec![String::new()]);
    }

    #[test]
    fn host_side_replacement_reassigns_the_name() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "f", 2);
        map.insert(ROOT_INODE, "f", 3);
        assert_eq!(map.child(ROOT_INODE, "f"), Some(3));
        assert_eq!(paths(&map, 2), vec!["f"], "old node keeps its last path");
    }

    #[test]
    fn deep_paths_are_bounded() {
        let mut map = PathMap::new();
        let name = "d".repeat(200);
        let mut parent = ROOT_INODE;
        for i in 0..30u64 {
            let child = i + 2;
            map.insert(parent, &name, child);
            parent = child;
        }
        assert_eq!(map.paths(parent), Err(PathError::TooLong));
        assert_eq!(map.paths(5).map(|p| p.len()), Ok(1));
    }

    #[test]
    fn reset_forgets_everything_but_root() {
        let mut map = PathMap::new();
        map.insert(ROOT_INODE, "a", 2);
        map.reset();
        assert_eq!(map.len(), 1);
        assert!(!map.is_live(2));
    }
}
