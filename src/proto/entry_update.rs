//! `coachfit.v1.EntryUpdate`, written by hand (build.rs maps the message here) so that a
//! stream can send an entry encoded once for every stream that carries it: one change goes
//! to each dashboard that follows its user, and converting and encoding it per stream was
//! a quarter of the server's CPU with 1,000 streams. On the wire it is exactly the message
//! `proto/coachfit/v1/entry.proto` declares; clients decode it into `entry` as usual.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::v1::Entry;

const POSITION: u32 = 1;
const ENTRY: u32 = 2;

#[derive(Clone, PartialEq, Default, Debug)]
pub struct EntryUpdate {
    pub position: u64,
    pub entry: Option<Entry>,
    /// The entry's encoding, written in place of `entry` when set.
    encoded_entry: Option<Bytes>,
}

impl EntryUpdate {
    /// An update whose entry is already encoded (an `Entry`'s `encode_to_vec`).
    pub fn encoded(position: u64, entry: Bytes) -> EntryUpdate {
        EntryUpdate { position, entry: None, encoded_entry: Some(entry) }
    }
}

impl prost::Message for EntryUpdate {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.position != 0 {
            encoding::uint64::encode(POSITION, &self.position, buf);
        }
        match (&self.encoded_entry, &self.entry) {
            // A message field is a length-delimited field holding the message's encoding.
            (Some(bytes), _) => encoding::bytes::encode(ENTRY, bytes, buf),
            (None, Some(entry)) => encoding::message::encode(ENTRY, entry, buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            POSITION => encoding::uint64::merge(wire_type, &mut self.position, buf, ctx),
            ENTRY => {
                // Merging into an entry held encoded merges into its decoded form.
                if let Some(bytes) = self.encoded_entry.take() {
                    self.entry = Some(Entry::decode(bytes)?);
                }
                encoding::message::merge(wire_type, self.entry.get_or_insert_with(Entry::default), buf, ctx)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let position = if self.position != 0 { encoding::uint64::encoded_len(POSITION, &self.position) } else { 0 };
        let entry = match (&self.encoded_entry, &self.entry) {
            (Some(bytes), _) => encoding::bytes::encoded_len(ENTRY, bytes),
            (None, Some(entry)) => encoding::message::encoded_len(ENTRY, entry),
            (None, None) => 0,
        };
        position + entry
    }

    fn clear(&mut self) {
        *self = EntryUpdate::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::FileDescriptorSet;

    use super::*;

    /// The message as `entry.proto` declares it, derived by prost: what clients expect.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Declared {
        #[prost(uint64, tag = "1")]
        position: u64,
        #[prost(message, optional, tag = "2")]
        entry: Option<Entry>,
    }

    fn entry() -> Entry {
        Entry { user_id: "u1".into(), date: "2026-03-01".into(), steps: Some(8_432), position: 7, ..Entry::default() }
    }

    #[test]
    fn an_update_encodes_as_the_declared_message_whether_its_entry_is_encoded_or_not() {
        let declared = Declared { position: 7, entry: Some(entry()) }.encode_to_vec();
        let encoded = EntryUpdate::encoded(7, entry().encode_to_vec().into());
        let plain = EntryUpdate { position: 7, entry: Some(entry()), encoded_entry: None };
        assert_eq!(encoded.encode_to_vec(), declared);
        assert_eq!(plain.encode_to_vec(), declared);
        assert_eq!(encoded.encoded_len(), declared.len());
        assert_eq!(plain.encoded_len(), declared.len());
        assert_eq!(EntryUpdate::decode(declared.as_slice()).unwrap(), plain);
    }

    /// `Declared` and the field numbers here must match what `entry.proto` declares: read
    /// from the descriptors the server publishes, so a change to the proto fails this test.
    #[test]
    fn the_hand_written_fields_are_the_ones_entry_proto_declares() {
        let files = FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let message = files
            .file
            .iter()
            .filter(|file| file.package() == "coachfit.v1")
            .flat_map(|file| &file.message_type)
            .find(|message| message.name() == "EntryUpdate")
            .expect("entry.proto declares EntryUpdate");
        let fields: Vec<_> =
            message.field.iter().map(|f| (f.number(), f.name(), f.r#type(), f.label(), f.type_name())).collect();
        assert_eq!(
            fields,
            [
                (POSITION as i32, "position", Type::Uint64, Label::Optional, ""),
                (ENTRY as i32, "entry", Type::Message, Label::Optional, ".coachfit.v1.Entry"),
            ]
        );
    }

    #[test]
    fn a_field_merged_into_an_encoded_update_merges_into_its_entry() {
        let mut update = EntryUpdate::encoded(7, entry().encode_to_vec().into());
        let later = Declared { position: 0, entry: Some(Entry { steps: Some(9_000), ..Entry::default() }) };
        update.merge(later.encode_to_vec().as_slice()).unwrap();
        let merged = Entry { steps: Some(9_000), ..entry() };
        assert_eq!(update, EntryUpdate { position: 7, entry: Some(merged), encoded_entry: None });
    }
}
