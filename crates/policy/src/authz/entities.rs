//! The entity store: the static part (`entities_json` and the three actions) is built once, and
//! each decision adds only its principal (once per identity, see `principal`) and its resource. When `entities_json` already describes one
//! of those (e.g. `Tool::"weather"` with an `owner`), the two are merged: the file's attributes
//! and parents stay, the request's attributes win on a clash, and the parents are joined.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::Value;

use super::error::AuthzConfigError;

/// An entity's parts, kept so a request entity with the same uid can be merged into it.
type Parts = (HashMap<String, RestrictedExpression>, HashSet<EntityUid>);

/// The entities every decision shares.
pub(crate) struct StaticEntities {
    entities: Entities,
    parts: HashMap<EntityUid, Parts>,
}

/// One of the request's own entities, before merging.
pub(crate) struct RequestEntity {
    pub uid: EntityUid,
    pub attrs: Vec<(String, RestrictedExpression)>,
    pub parents: Vec<EntityUid>,
}

impl StaticEntities {
    /// `defaults` (the action entities) merged with the parsed `entities_json` list.
    pub(crate) fn build(
        json: &[Value],
        defaults: Vec<RequestEntity>,
        origin: &str,
    ) -> Result<StaticEntities, AuthzConfigError> {
        let err = |index: Option<usize>, message: String| AuthzConfigError::Entities {
            origin: origin.to_owned(),
            index,
            message,
        };
        let mut parts: HashMap<EntityUid, Parts> = HashMap::new();
        for (index, item) in json.iter().enumerate() {
            let entity = Entity::from_json_value(with_cedar_go_defaults(item), None)
                .map_err(|e| err(Some(index), e.to_string()))?;
            let (uid, attrs, parents) = entity.into_inner();
            if parts.insert(uid.clone(), (attrs, parents)).is_some() {
                return Err(err(Some(index), format!("{uid} is listed twice")));
            }
        }
        for default in defaults {
            let entry = parts.entry(default.uid).or_default();
            for (k, v) in default.attrs {
                // The file's own attributes win over the built-in ones.
                entry.0.entry(k).or_insert(v);
            }
            entry.1.extend(default.parents);
        }
        let list = parts
            .iter()
            .map(|(uid, (attrs, parents))| {
                Entity::new(uid.clone(), attrs.clone(), parents.clone()).map_err(|e| err(None, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entities = Entities::from_entities(list, None).map_err(|e| err(None, e.to_string()))?;
        Ok(StaticEntities { entities, parts })
    }

    /// A request entity, merged with the static entity of the same uid if there is one.
    pub(crate) fn entity(&self, e: RequestEntity) -> Result<Entity, String> {
        let (mut attrs, mut parents): Parts = self.parts.get(&e.uid).cloned().unwrap_or_default();
        attrs.extend(e.attrs);
        parents.extend(e.parents);
        Entity::new(e.uid, attrs, parents).map_err(|err| err.to_string())
    }

    /// Whether a request's resource `uid` (parent: the server) added to `store` would be an
    /// entity of the request alone: no static entity shares its uid, and it is no ancestor of
    /// its parent, so adding it changes no other entity and cannot fail (no cycle). Evaluated
    /// against a store of the resource alone, a policy that looks at no other entity then
    /// decides as against the whole store.
    pub(crate) fn resource_alone(&self, store: &Entities, uid: &EntityUid, server: Option<&EntityUid>) -> bool {
        !self.parts.contains_key(uid) && server.is_none_or(|p| p != uid && !store.is_ancestor_of(uid, p))
    }

    /// The static store alone.
    pub(crate) fn base(&self) -> &Entities {
        &self.entities
    }
}

/// `store` plus `entity` (replacing one of the same uid), the transitive closure recomputed.
pub(crate) fn with_entity(store: &Entities, entity: Entity) -> Result<Entities, String> {
    store.clone().upsert_entities([entity], None).map_err(|e| e.to_string())
}

/// cedar-go (ToolHive) accepts an entity without `attrs` or `parents`; Cedar's Rust parser
/// requires both, so they are filled in empty.
fn with_cedar_go_defaults(item: &Value) -> Value {
    let mut item = item.clone();
    if let Value::Object(map) = &mut item {
        map.entry("attrs").or_insert_with(|| Value::Object(Default::default()));
        map.entry("parents").or_insert_with(|| Value::Array(Vec::new()));
    }
    item
}

/// A uid of a type name known to be valid and any id (escaping is Cedar's, never a format string).
pub(crate) fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}
