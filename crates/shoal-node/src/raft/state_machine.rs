//! The state machine: in-memory state, snapshots in redb (to be written).

/// The replicated state's rules: apply one committed command.
pub trait StateLogic<C: openraft::RaftTypeConfig>:
    Default + Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    fn apply(&mut self, index: u64, command: &C::D) -> C::R;
}
