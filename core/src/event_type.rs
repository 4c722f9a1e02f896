//! Interned event types.
//!
//! An [`EventType`] is a small `Copy` value: a dense index into a process-wide table, plus the
//! `&'static` name and the category. Comparing or hashing one touches only the index, so routing
//! an event never hashes its type name. Names are interned once and never freed; the table only
//! grows, which is what makes indexes stable for the lifetime of the process.
//!
//! The 13 built-in types and the 2 standard custom ones have fixed indexes and are available as
//! constants ([`EventType::USER_LOGIN`], ...).

use crate::error::EventTypeError;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use plugbus_contract::{types, validate_type_name, Category, TypedEvent, BUILTIN_TYPES};
use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

/// An interned event type name with its category.
///
/// ```
/// use plugbus::{Category, EventType};
/// let t = EventType::new("billing.invoice_paid", Category::Business)?;
/// assert_eq!(t.name(), "billing.invoice_paid");
/// assert_eq!(EventType::lookup("billing.invoice_paid"), Some(t));
/// assert_eq!(EventType::USER_LOGIN.category(), Category::Business);
/// # Ok::<(), plugbus::EventTypeError>(())
/// ```
#[derive(Clone, Copy)]
pub struct EventType {
    index: u32,
    name: &'static str,
    category: Category,
}

const fn builtin(index: usize) -> EventType {
    EventType {
        index: index as u32,
        name: BUILTIN_TYPES[index].0,
        category: BUILTIN_TYPES[index].1,
    }
}

impl EventType {
    /// `plugin.loaded`
    pub const PLUGIN_LOADED: EventType = builtin(0);
    /// `plugin.unloaded`
    pub const PLUGIN_UNLOADED: EventType = builtin(1);
    /// `plugin.started`
    pub const PLUGIN_STARTED: EventType = builtin(2);
    /// `plugin.stopped`
    pub const PLUGIN_STOPPED: EventType = builtin(3);
    /// `plugin.error`
    pub const PLUGIN_ERROR: EventType = builtin(4);
    /// `system.startup`
    pub const SYSTEM_STARTUP: EventType = builtin(5);
    /// `system.shutdown`
    pub const SYSTEM_SHUTDOWN: EventType = builtin(6);
    /// `config.changed`
    pub const CONFIG_CHANGED: EventType = builtin(7);
    /// `user.login`
    pub const USER_LOGIN: EventType = builtin(8);
    /// `user.logout`
    pub const USER_LOGOUT: EventType = builtin(9);
    /// `data.created`
    pub const DATA_CREATED: EventType = builtin(10);
    /// `data.updated`
    pub const DATA_UPDATED: EventType = builtin(11);
    /// `data.deleted`
    pub const DATA_DELETED: EventType = builtin(12);
    /// `user.login_failed` (standard custom type, business)
    pub const USER_LOGIN_FAILED: EventType = builtin(13);
    /// `security.alert` (standard custom type, business)
    pub const SECURITY_ALERT: EventType = builtin(14);

    /// Interns `name` with `category`, or returns the existing type of that name.
    ///
    /// # Errors
    /// The name breaks the grammar of [`plugbus_contract::validate_type_name`], or the type
    /// already exists with another category.
    pub fn new(name: &str, category: Category) -> Result<EventType, EventTypeError> {
        if let Some(t) = EventType::lookup(name) {
            return t.check_category(category);
        }
        validate_type_name(name)?;
        REGISTRY.insert(name, category)?.check_category(category)
    }

    /// The type named `name`, if it was interned (built-in types always are).
    pub fn lookup(name: &str) -> Option<EventType> {
        REGISTRY.by_name.load().get(name).copied()
    }

    /// Interns a type known only by name: an existing type keeps its category, a new one is
    /// [`Category::Custom`].
    pub fn named(name: &str) -> Result<EventType, EventTypeError> {
        match EventType::lookup(name) {
            Some(t) => Ok(t),
            None => EventType::new(name, Category::Custom),
        }
    }

    /// The type of payload `T`, interned on first use and cached per thread afterwards.
    pub fn of<T: TypedEvent>() -> Result<EventType, EventTypeError> {
        let id = TypeId::of::<T>();
        let cached = TYPED_CACHE.with(|c| {
            c.borrow()
                .iter()
                .find_map(|(k, t)| (*k == id).then_some(*t))
        });
        if let Some(t) = cached {
            return Ok(t);
        }
        let t = EventType::new(T::EVENT_TYPE, T::CATEGORY)?;
        TYPED_CACHE.with(|c| c.borrow_mut().push((id, t)));
        Ok(t)
    }

    fn check_category(self, category: Category) -> Result<EventType, EventTypeError> {
        if self.category == category {
            Ok(self)
        } else {
            Err(EventTypeError::CategoryConflict {
                name: self.name.to_owned(),
                existing: self.category,
                requested: category,
            })
        }
    }

    /// The dotted name.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The category.
    pub const fn category(self) -> Category {
        self.category
    }

    /// The dense index of this type in the process-wide table (stable for the process).
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// True for the 13 built-in types (not the standard custom ones).
    pub const fn is_builtin(self) -> bool {
        (self.index as usize) < types::BUILTIN_COUNT
    }

    /// How many types are interned so far.
    pub fn count() -> usize {
        REGISTRY.all.load().len()
    }

    /// Every interned type, in index order.
    pub fn all() -> Vec<EventType> {
        REGISTRY.all.load().as_ref().clone()
    }
}

thread_local! {
    static TYPED_CACHE: RefCell<Vec<(TypeId, EventType)>> = const { RefCell::new(Vec::new()) };
}

struct Registry {
    by_name: ArcSwap<HashMap<&'static str, EventType>>,
    all: ArcSwap<Vec<EventType>>,
    write: Mutex<()>,
}

/// Names are leaked once each: types live for the process, and an index must never dangle.
const MAX_TYPES: usize = 1 << 20;

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let all: Vec<EventType> = (0..BUILTIN_TYPES.len()).map(builtin).collect();
    let by_name = all.iter().map(|t| (t.name, *t)).collect();
    Registry {
        by_name: ArcSwap::from_pointee(by_name),
        all: ArcSwap::from_pointee(all),
        write: Mutex::new(()),
    }
});

impl Registry {
    fn insert(&self, name: &str, category: Category) -> Result<EventType, EventTypeError> {
        let _guard = self.write.lock();
        if let Some(t) = self.by_name.load().get(name) {
            return Ok(*t);
        }
        let all = self.all.load();
        if all.len() >= MAX_TYPES {
            return Err(EventTypeError::TooManyTypes { max: MAX_TYPES });
        }
        let t = EventType {
            index: all.len() as u32,
            name: Box::leak(name.to_owned().into_boxed_str()),
            category,
        };
        let mut next_all = all.as_ref().clone();
        next_all.push(t);
        let mut next_names = self.by_name.load().as_ref().clone();
        next_names.insert(t.name, t);
        // Publish the index table first so anyone who finds the name can also find the index.
        self.all.store(Arc::new(next_all));
        self.by_name.store(Arc::new(next_names));
        Ok(t)
    }
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl Eq for EventType {}

impl Hash for EventType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.index);
    }
}

impl PartialOrd for EventType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EventType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({}, {})", self.name, self.category)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use plugbus_contract::payload::{SecurityAlert, UserLogin};

    #[test]
    fn builtins_have_fixed_indexes_and_are_found_by_name() {
        for (i, (name, cat)) in BUILTIN_TYPES.iter().enumerate() {
            let t = EventType::lookup(name).unwrap();
            assert_eq!(t.index(), i);
            assert_eq!(t.category(), *cat);
        }
        assert_eq!(EventType::lookup("user.login"), Some(EventType::USER_LOGIN));
        assert!(EventType::USER_LOGOUT.is_builtin());
        assert!(!EventType::SECURITY_ALERT.is_builtin());
    }

    #[test]
    fn custom_types_intern_once_and_keep_their_category() {
        let a = EventType::new("test.interned_once", Category::Custom).unwrap();
        let b = EventType::new("test.interned_once", Category::Custom).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.index(), b.index());
        let err = EventType::new("test.interned_once", Category::System).unwrap_err();
        assert!(err.to_string().contains("test.interned_once"), "{err}");
        assert!(EventType::new("Bad Name", Category::Custom).is_err());
        assert_eq!(EventType::named("test.interned_once").unwrap(), a);
    }

    #[test]
    fn typed_lookup_uses_the_payload_contract() {
        assert_eq!(EventType::of::<UserLogin>().unwrap(), EventType::USER_LOGIN);
        assert_eq!(
            EventType::of::<SecurityAlert>().unwrap(),
            EventType::SECURITY_ALERT
        );
    }

    #[test]
    fn concurrent_interning_yields_one_index_per_name() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..200)
                        .map(|i| EventType::new(&format!("race.t{i}"), Category::Custom).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<EventType>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for r in &results[1..] {
            for (a, b) in r.iter().zip(&results[0]) {
                assert_eq!(a.index(), b.index());
            }
        }
    }
}
