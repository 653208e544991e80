//! One fault plan for every emulator, and the state that draws it.

use std::collections::BTreeMap;
use std::time::Duration;

/// The faults an emulator injects. Rates are drawn per request from a generator seeded by
/// [`Self::seed`] (the same seed gives the same draws; which request gets which draw still
/// depends on the order concurrent requests arrive in); [`Self::rules`] fail chosen calls
/// exactly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultPlan {
    /// Seed of the draws.
    pub seed: u64,
    /// Share of requests answered "throttled" (429) before anything is served.
    pub throttle_rate: f64,
    /// Share of requests answered with a server error (5xx) before anything is served.
    pub error_rate: f64,
    /// Share of the mutations carried out whose answer is lost (the emulator keeps serving).
    pub lost_rate: f64,
    /// After this many mutations (counted from when the plan was set), the next one is carried
    /// out and its answer lost, and every later request is refused until the plan is set again
    /// (a process that died mid-call).
    pub die_after: Option<u64>,
    /// The `Retry-After` of injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Exact faults: the Nth call of a route failed with a status, a delay or a reset.
    pub rules: Vec<Rule>,
}

/// Fails chosen calls of one route (calls counted from when the plan was set).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The route as the emulator names it (`GET operations`, `POST clusters`), or `*` for
    /// every request.
    pub route: String,
    /// Which of its calls.
    pub calls: Calls,
    /// What they get.
    pub effect: Effect,
}

impl Rule {
    /// `effect` for `calls` of `route`.
    pub fn new(route: impl Into<String>, calls: Calls, effect: Effect) -> Self {
        Self {
            route: route.into(),
            calls,
            effect,
        }
    }
}

/// Which calls of a route a [`Rule`] hits (the first call is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Only the Nth.
    Nth(u64),
    /// The first N.
    First(u64),
    /// Every one.
    Every,
}

impl Calls {
    fn hits(self, n: u64) -> bool {
        match self {
            Calls::Nth(k) => n == k,
            Calls::First(k) => n <= k,
            Calls::Every => true,
        }
    }
}

/// What a [`Rule`] does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Answered with this status (in the service's error shape) without being served.
    Status(u16),
    /// Served after this delay.
    Delay(Duration),
    /// The connection closes without an answer, nothing served.
    Reset,
}

/// What a request gets before it is served ([`Faults::before`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Served (after [`Faults::before`]'s delay, if any).
    Serve,
    /// A drawn 429.
    Throttle,
    /// A drawn 5xx.
    ServerError,
    /// A rule's status.
    Status(u16),
    /// A rule's reset.
    Reset,
}

/// What becomes of a mutation's answer once it is carried out ([`Faults::after_mutation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Answered.
    Deliver,
    /// The answer is lost; the emulator keeps serving.
    Lost,
    /// The answer is lost and the emulator plays dead ([`FaultPlan::die_after`]).
    Died,
}

/// A [`FaultPlan`] in force: the generator, the calls counted per route, the mutations since
/// the plan was set, and whether the emulator plays dead.
#[derive(Debug, Clone)]
pub struct Faults {
    plan: FaultPlan,
    draws: Draws,
    rng: u64,
    calls: BTreeMap<String, u64>,
    all_calls: u64,
    mutations: u64,
    dead: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(FaultPlan::default())
    }
}

/// How the draws are made. Tests pin seeds whose outcomes they assert (a lost answer among the
/// first mutations), so an emulator keeps the generator its seeds were chosen with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Draws {
    /// xorshift64 (13, 7, 17); throttling drawn before server errors.
    #[default]
    Xorshift,
    /// xorshift64* (12, 25, 27, multiplied out); server errors drawn before throttling (the
    /// GKE emulator's seeds).
    XorshiftStarErrorsFirst,
}

/// Spreads small seeds over the word; xorshift must never start from zero.
fn seeded(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

impl Faults {
    /// `plan` in force from now.
    pub fn new(plan: FaultPlan) -> Self {
        Self::with_draws(plan, Draws::default())
    }

    /// `plan` in force from now, drawn as `draws` says (kept when the plan is set again).
    pub fn with_draws(plan: FaultPlan, draws: Draws) -> Self {
        Self {
            draws,
            rng: seeded(plan.seed),
            plan,
            calls: BTreeMap::new(),
            all_calls: 0,
            mutations: 0,
            dead: false,
        }
    }

    /// Puts `plan` in force: reseeds, counts calls and mutations from zero, revives.
    pub fn set(&mut self, plan: FaultPlan) {
        *self = Self::with_draws(plan, self.draws);
    }

    /// The plan in force.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// True once "die after" fired (until the plan is set again or [`Self::revive`]).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Stops playing dead.
    pub fn revive(&mut self) {
        self.dead = false;
    }

    /// A draw in `0.0..1.0` (xorshift64, reproducible from the seed).
    pub fn roll(&mut self) -> f64 {
        let mut s = self.rng;
        let out = match self.draws {
            Draws::Xorshift => {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            }
            Draws::XorshiftStarErrorsFirst => {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                s.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }
        };
        self.rng = s;
        (out >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Counts a call of `route` and says what it gets: the first rule that hits it (a delay
    /// rule adds its delay and lets the others speak), else a throttling or server-error
    /// draw, else served.
    pub fn before(&mut self, route: &str) -> (Before, Option<Duration>) {
        self.all_calls += 1;
        let n = {
            let count = self.calls.entry(route.to_string()).or_insert(0);
            *count += 1;
            *count
        };
        let mut delay = None;
        for rule in &self.plan.rules {
            let nth = if rule.route == "*" {
                self.all_calls
            } else if rule.route == route {
                n
            } else {
                continue;
            };
            if !rule.calls.hits(nth) {
                continue;
            }
            match rule.effect {
                Effect::Delay(d) => delay = Some(delay.unwrap_or_default() + d),
                Effect::Status(code) => return (Before::Status(code), delay),
                Effect::Reset => return (Before::Reset, delay),
            }
        }
        let r = self.roll();
        let (throttle, errors) = (self.plan.throttle_rate, self.plan.error_rate);
        let verdict = match self.draws {
            Draws::Xorshift if r < throttle => Before::Throttle,
            Draws::Xorshift if r < throttle + errors => Before::ServerError,
            Draws::XorshiftStarErrorsFirst if r < errors => Before::ServerError,
            Draws::XorshiftStarErrorsFirst if r < errors + throttle => Before::Throttle,
            _ => Before::Serve,
        };
        (verdict, delay)
    }

    /// Counts a mutation that was carried out and says whether its answer is delivered.
    pub fn after_mutation(&mut self) -> After {
        self.mutations += 1;
        if self
            .plan
            .die_after
            .is_some_and(|limit| self.mutations > limit)
        {
            self.dead = true;
            return After::Died;
        }
        if self.lose() {
            After::Lost
        } else {
            After::Deliver
        }
    }

    /// Draws whether a write's answer is lost by [`FaultPlan::lost_rate`] (without counting
    /// it as a mutation).
    pub fn lose(&mut self) -> bool {
        self.plan.lost_rate > 0.0 && self.roll() < self.plan.lost_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_from_the_seed() {
        let draws = |seed| {
            let mut f = Faults::new(FaultPlan {
                seed,
                ..FaultPlan::default()
            });
            (0..100).map(|_| f.roll()).collect::<Vec<f64>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(0).iter().all(|r| (0.0..1.0).contains(r)));
    }

    #[test]
    fn rules_hit_the_calls_they_name() {
        let mut f = Faults::new(FaultPlan {
            rules: vec![
                Rule::new("GET x", Calls::Nth(2), Effect::Status(503)),
                Rule::new("*", Calls::First(1), Effect::Status(429)),
                Rule::new("POST y", Calls::Every, Effect::Reset),
                Rule::new(
                    "GET z",
                    Calls::Every,
                    Effect::Delay(Duration::from_millis(5)),
                ),
            ],
            ..FaultPlan::default()
        });
        assert_eq!(f.before("GET x"), (Before::Status(429), None), "first call");
        assert_eq!(f.before("GET x"), (Before::Status(503), None));
        assert_eq!(f.before("GET x"), (Before::Serve, None));
        assert_eq!(f.before("POST y"), (Before::Reset, None));
        assert_eq!(
            f.before("GET z"),
            (Before::Serve, Some(Duration::from_millis(5)))
        );
        // Setting the plan again counts from zero.
        let plan = f.plan().clone();
        f.set(plan);
        assert_eq!(f.before("GET q"), (Before::Status(429), None));
    }

    #[test]
    fn rates_and_die_after() {
        let mut f = Faults::new(FaultPlan {
            throttle_rate: 1.0,
            ..FaultPlan::default()
        });
        assert_eq!(f.before("any").0, Before::Throttle);
        f.set(FaultPlan {
            error_rate: 1.0,
            ..FaultPlan::default()
        });
        assert_eq!(f.before("any").0, Before::ServerError);
        f.set(FaultPlan {
            die_after: Some(1),
            ..FaultPlan::default()
        });
        assert_eq!(f.after_mutation(), After::Deliver);
        assert_eq!(f.after_mutation(), After::Died);
        assert!(f.is_dead());
        f.set(FaultPlan {
            lost_rate: 1.0,
            ..FaultPlan::default()
        });
        assert!(!f.is_dead(), "revived");
        assert_eq!(f.after_mutation(), After::Lost);
    }
}
