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
//!    its `index` (if any) is that call's. An id no call has continues the
//!    latest call at its `index` if that call has no id yet (the id came
//!    after the first piece); otherwise it opens a new call: a new id is a
//!    new call, whatever its index.
//! 2. A delta without an `id` but with an `index` continues the latest call
//!    with that index, or opens one.
//! 3. A delta with neither continues the latest call (or opens the first).
//! 4. Whatever the above found, a delta that names a function continues a
//!    call only if that call has no name yet: a call is named once, in its
//!    first piece, so a second name is a second call (two calls that share
//!    an id and an index).
//!
//! A call opened without an index takes its position as its index, as the
//! chat format defines it: `{id: "a"}` then `{index: 0}` is one call.

/// One call as the rule sees it.
#[derive(Debug)]
struct Call {
    index: u64,
    id: Option<String>,
    named: bool,
}

/// The calls seen so far, in the order they opened.
#[derive(Debug, Default)]
pub struct ToolCallRule {
    calls: Vec<Call>,
}

impl ToolCallRule {
    /// The position (in order of opening) of the call a delta with
    /// `index`, `id` and (`named`) a function name belongs to, and whether
    /// the delta opens it.
    pub fn place(&mut self, index: Option<u64>, id: Option<&str>, named: bool) -> (usize, bool) {
        let id = id.filter(|id| !id.is_empty());
        let calls = &self.calls;
        let found = match (id, index) {
            (Some(id), index) => calls
                .iter()
                .rposition(|c| c.id.as_deref() == Some(id) && index.is_none_or(|i| i == c.index))
                .or_else(|| {
                    let index = index?;
                    let at = calls.iter().rposition(|c| c.index == index)?;
                    calls[at].id.is_none().then_some(at)
                }),
            (None, Some(index)) => calls.iter().rposition(|c| c.index == index),
            (None, None) => calls.len().checked_sub(1),
        };
        match found.filter(|&at| !(named && self.calls[at].named)) {
            Some(position) => {
                let call = &mut self.calls[position];
                call.named |= named;
                if call.id.is_none() {
                    call.id = id.map(str::to_owned);
                }
                (position, false)
            }
            None => {
                let position = self.calls.len();
                self.calls.push(Call {
                    index: index.unwrap_or(position as u64),
                    id: id.map(str::to_owned),
                    named,
                });
                (position, true)
            }
        }
    }

    /// The place of a chat tool-call delta (`{"index", "id", "function":
    /// {"name", ...}}`).
    pub fn place_delta(&mut self, delta: &serde_json::Value) -> (usize, bool) {
        let index = delta.get("index").and_then(serde_json::Value::as_u64);
        let id = delta.get("id").and_then(serde_json::Value::as_str);
        let named = delta
            .pointer("/function/name")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|n| !n.is_empty());
        self.place(index, id, named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(deltas: &[(Option<u64>, Option<&str>)]) -> Vec<(usize, bool)> {
        let mut rule = ToolCallRule::default();
        deltas
            .iter()
            .map(|(i, id)| rule.place(*i, *id, false))
            .collect()
    }

    #[test]
    fn an_id_after_the_first_piece_is_the_same_call() {
        let mut rule = ToolCallRule::default();
        assert_eq!(rule.place(Some(0), None, true), (0, true));
        assert_eq!(rule.place(Some(0), Some("call_1"), false), (0, false));
        assert_eq!(rule.place(Some(0), Some("call_1"), false), (0, false));
    }

    #[test]
    fn a_second_name_is_a_second_call() {
        let mut rule = ToolCallRule::default();
        assert_eq!(rule.place(Some(0), Some("call_1"), true), (0, true));
        assert_eq!(rule.place(Some(0), None, false), (0, false));
        assert_eq!(rule.place(Some(0), Some("call_1"), true), (1, true));
        assert_eq!(rule.place(Some(0), None, false), (1, false));
    }

    #[test]
    fn a_name_after_the_first_piece_is_the_same_call() {
        let mut rule = ToolCallRule::default();
        assert_eq!(rule.place(Some(0), Some("call_1"), false), (0, true));
        assert_eq!(rule.place(Some(0), None, true), (0, false));
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
