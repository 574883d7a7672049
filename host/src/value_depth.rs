//! How deeply a [`Value`] nests: the host copies and drops plugin values by recursion,
//! so a value nested without end (a list in a list in a list..., which safe plugin code
//! can build) would overflow the host thread's stack, which aborts the process. What
//! the host copies is checked first, without recursion.

use hotswap_plugin_api::Value;

/// The deepest nesting of lists and maps the host copies (a scalar is depth 0).
pub(crate) const MAX_DEPTH: usize = 256;

/// Whether `value` nests deeper than `max` lists or maps; walks it with a stack of its
/// own, never by recursion.
pub(crate) fn deeper_than(value: &Value, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        if matches!(v, Value::List(_) | Value::Map(_)) && depth >= max {
            return true;
        }
        match v {
            Value::List(items) => stack.extend(items.iter().map(|c| (c, depth + 1))),
            Value::Map(entries) => stack.extend(entries.iter().map(|e| (&e.1, depth + 1))),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = Value::Null;
        for i in 0..depth {
            v = Value::List(vec![Value::Int(i as i64), v].into());
        }
        v
    }

    #[test]
    fn depth_is_counted_without_recursion() {
        assert!(!deeper_than(&Value::Int(1), 0));
        assert!(!deeper_than(&nested(MAX_DEPTH), MAX_DEPTH));
        assert!(deeper_than(&nested(MAX_DEPTH + 1), MAX_DEPTH));
        // Far deeper than any stack would allow a recursive walk (each level a frame).
        let deep = nested(200_000);
        assert!(deeper_than(&deep, MAX_DEPTH));
        // Dropped level by level, not by the derived (recursive) drop.
        let mut v = deep;
        while let Value::List(items) = v {
            v = items.into_iter().nth(1).unwrap_or(Value::Null);
        }
    }
}
