//! The one rule that assigns streamed tool-call deltas to calls, used by
//! every path that gathers them: a plain answer made of events
//! (`translate.rs`) and Responses events made of chat chunks
//! (`responses.rs`), so that the two can never disagree.
//!
//! A chat stream names a call by `index` (its position in `tool_calls`)
//! and sends its `id` with the first piece. Upstreams bend both: some
//! leave the index out, some reuse index 0 for parallel calls (Ollama, some
//! vLLM versions), some send an id without an index. The rule:
//!
//! 1. A delta with an `id` continues the latest call with that id, when
//!    its `index` (if any) is that call's; otherwise it opens a new call:
//!    a new id is a new call, whatever its index.
//! 2. A delta without an `id` but with an `index` continues the latest call
//!    with that index, or opens one.
//! 3. A delta with neither continues the latest call (or opens the first).
//!
//! A call opened without an index takes its position as its index, as the
//! chat format defines it: `{id: "a"}` then `{index: 0}` is one call.

/// The calls seen so far, in the order they opened: `(index, id)`.
#[derive(Debug, Default)]
pub struct ToolCallRule {
    calls: Vec<(u64, Option<String>)>,
}

impl ToolCallRule {
    /// The position (in order of opening) of the call a delta with
    /// `index` and `id` belongs to, and whether the delta opens it.
    pub fn place(&mut self, index: Option<u64>, id: Option<&str>) -> (usize, bool) {
        let calls = &self.calls;
        let found = match (id.filter(|id| !id.is_empty()), index) {
            (Some(id), index) => calls
                .iter()
                .rposition(|(n, c)| c.as_deref() == Some(id) && index.is_none_or(|i| i == *n)),
            (None, Some(index)) => calls.iter().rposition(|(n, _)| *n == index),
            (None, None) => calls.len().checked_sub(1),
        };
        match found {
            Some(position) => (position, false),
            None => {
                let position = self.calls.len();
                let index = index.unwrap_or(position as u64);
                let id = id.filter(|id| !id.is_empty()).map(str::to_owned);
                self.calls.push((index, id));
                (position, true)
            }
        }
    }

    /// The place of a chat tool-call delta (`{"index", "id", ...}`).
    pub fn place_delta(&mut self, delta: &serde_json::Value) -> (usize, bool) {
        let index = delta.get("index").and_then(serde_json::Value::as_u64);
        let id = delta.get("id").and_then(serde_json::Value::as_str);
        self.place(index, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(deltas: &[(Option<u64>, Option<&str>)]) -> Vec<(usize, bool)> {
        let mut rule = ToolCallRule::default();
        deltas.iter().map(|(i, id)| rule.place(*i, *id)).collect()
    }

    #[test]
    fn the_usual_stream_indexes_each_call_once() {
        let got = places(&[
            (Some(0), Some("a")),
            (Some(0), None),
            (Some(1), Some("b")),
            (Some(1), None),
            (Some(0), None),
        ]);
        assert_eq!(
            got,
            [(0, true), (0, false), (1, true), (1, false), (0, false)]
        );
    }

    #[test]
    fn an_id_then_its_index_is_one_call() {
        assert_eq!(
            places(&[(None, Some("a")), (Some(0), None)]),
            [(0, true), (0, false)]
        );
    }

    #[test]
    fn a_new_id_is_a_new_call_whatever_its_index() {
        let got = places(&[
            (Some(0), Some("a")),
            (Some(0), None),
            (Some(0), Some("b")),
            (Some(0), None),
        ]);
        assert_eq!(got, [(0, true), (0, false), (1, true), (1, false)]);
    }

    #[test]
    fn a_repeated_id_at_another_index_is_another_call() {
        assert_eq!(
            places(&[(Some(0), Some("x")), (Some(1), Some("x"))]),
            [(0, true), (1, true)]
        );
    }

    #[test]
    fn without_index_or_id_the_last_call_goes_on() {
        let got = places(&[
            (None, None),
            (None, Some("b")),
            (None, None),
            (None, Some("a")),
        ]);
        assert_eq!(got, [(0, true), (1, true), (1, false), (2, true)]);
    }
}
