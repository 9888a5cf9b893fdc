//! A minimal slab: stable keys for connections, O(1) insert and remove.

pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { entries: Vec::new(), free: Vec::new() }
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        if let Some(key) = self.free.pop() {
            self.entries[key] = Some(value);
            key
        } else {
            self.entries.push(Some(value));
            self.entries.len() - 1
        }
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let v = self.entries.get_mut(key)?.take();
        if v.is_some() {
            self.free.push(key);
        }
        v
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }

    pub(crate) fn keys(&self) -> Vec<usize> {
        (0..self.entries.len()).filter(|&k| self.entries[k].is_some()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_after_remove() {
        let mut s = Slab::new();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        let c = s.insert("c");
        assert_eq!(c, a);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.keys(), vec![a, b]);
    }
}
