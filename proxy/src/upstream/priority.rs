//! Envoy's priority levels: a cluster's endpoints come in levels (0 first; the operator orders them by locality,
//! nearest first), and a pick goes to a lower level only as the levels above lose healthy endpoints. Each
//! level's health is its share of healthy endpoints times the overprovisioning factor (1.4: a level with 72 % of
//! its endpoints healthy still takes all the traffic), and the levels split the load in order by that health.
//! When the whole cluster's health is under the panic threshold, the load follows endpoint counts and ejections
//! are ignored (Envoy's total panic); a level under the threshold ignores ejections among its own endpoints.
//! In a locality-weighted cluster, a level's localities then share its load by weight times availability.
//! Pure.

/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING: usize = 140;

/// One level's endpoints: how many there are (healthy or not) and how many are healthy now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    pub total: usize,
    pub healthy: usize,
}

/// Where one pick goes: its level, and whether that level is in panic (ejections ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub level: usize,
    pub panic: bool,
}

fn health(level: &Level) -> usize {
    (OVERPROVISIONING * level.healthy).checked_div(level.total).unwrap_or(0).min(100)
}

/// Each level's share of the load, in percent (they add up to 100), and whether the cluster is in total panic.
pub fn loads(levels: &[Level], panic_threshold: f64) -> (Vec<usize>, bool) {
    let healths: Vec<usize> = levels.iter().map(health).collect();
    let total_health = healths.iter().sum::<usize>().min(100);
    if total_health == 0 || (total_health as f64) < panic_threshold {
        let hosts: usize = levels.iter().map(|l| l.total).sum::<usize>().max(1);
        return (distribute(levels.iter().map(|l| l.total * 100 / hosts)), true);
    }
    (distribute(healths.iter().map(|h| h * 100 / total_health)), false)
}

/// Shares handed out in order until 100 is gone; what rounding leaves goes to the first level with a share.
fn distribute(wanted: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut remaining = 100;
    let mut shares: Vec<usize> = wanted
        .map(|want| {
            let share = want.min(remaining);
            remaining -= share;
            share
        })
        .collect();
    let first = shares.iter().position(|s| *s > 0).unwrap_or(0);
    if let Some(first) = shares.get_mut(first) {
        *first += remaining;
    }
    shares
}

/// The level a pick with random `roll` goes to.
pub fn choose(levels: &[Level], panic_threshold: f64, roll: u64) -> Choice {
    let (shares, total_panic) = loads(levels, panic_threshold);
    let mut point = (roll % 100) as usize;
    let level = shares
        .iter()
        .position(|share| {
            if point < *share {
                return true;
            }
            point -= share;
            false
        })
        .unwrap_or(0);
    let own = levels.get(level).copied().unwrap_or_default();
    let level_panic = own.total > 0 && ((own.healthy * 100) as f64) < panic_threshold * own.total as f64;
    Choice { level, panic: total_panic || level_panic }
}

/// Which locality of a level a pick goes to, for locality-weighted clusters: each locality's weight times its
/// availability (its health, as a level's, capped at 1; all of it in panic), picked with `uniform` in [0, 1).
/// `None` when no locality has any.
pub fn choose_locality(localities: &[(u32, Level)], panic: bool, uniform: f64) -> Option<usize> {
    let effective: Vec<f64> = localities
        .iter()
        .map(|(weight, level)| {
            let availability = if panic { usize::from(level.total > 0) * 100 } else { health(level) };
            f64::from(*weight) * availability as f64
        })
        .collect();
    super::warmup::weighted(&effective, uniform)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(of: &[(usize, usize)]) -> Vec<Level> {
        of.iter().map(|(healthy, total)| Level { total: *total, healthy: *healthy }).collect()
    }

    #[test]
    fn the_first_level_takes_everything_while_healthy_enough() {
        assert_eq!(loads(&levels(&[(4, 4), (4, 4)]), 50.0), (vec![100, 0], false));
        // 3 of 4: 75 % x 1.4 is over 100.
        assert_eq!(loads(&levels(&[(3, 4), (4, 4)]), 50.0), (vec![100, 0], false));
    }

    #[test]
    fn load_spills_over_as_the_first_level_loses_endpoints() {
        // Envoy's documented example: P0 at 50 % healthy takes 70 %, P1 the rest.
        assert_eq!(loads(&levels(&[(1, 2), (2, 2)]), 50.0), (vec![70, 30], false));
        assert_eq!(loads(&levels(&[(0, 2), (2, 2), (2, 2)]), 50.0), (vec![0, 100, 0], false));
        // Not enough health anywhere: normalized (P0 28 of 56, P1 28 of 56).
        assert_eq!(loads(&levels(&[(2, 10), (2, 10)]), 0.0), (vec![50, 50], false));
    }

    #[test]
    fn localities_share_a_level_by_weight_times_availability() {
        let full = Level { total: 2, healthy: 2 };
        let half = Level { total: 2, healthy: 1 };
        let picks = |localities: &[(u32, Level)], panic: bool| -> Vec<usize> {
            let mut counts = vec![0; localities.len()];
            for i in 0..1000 {
                counts[choose_locality(localities, panic, f64::from(i) / 1000.0).unwrap()] += 1;
            }
            counts
        };
        assert_eq!(picks(&[(80, full), (20, full)], false), [800, 200]);
        // Half its endpoints healthy: 70 % available, so 80 x 0.7 against 20.
        assert_eq!(picks(&[(80, half), (20, full)], false), [737, 263]);
        assert_eq!(picks(&[(80, Level { total: 2, healthy: 0 }), (20, full)], true), [800, 200], "panic");
        assert_eq!(choose_locality(&[(0, full)], false, 0.5), None);
    }

    #[test]
    fn total_panic_follows_endpoint_counts_and_picks_see_it() {
        let sick = levels(&[(0, 3), (1, 6)]);
        assert_eq!(loads(&sick, 50.0), (vec![34, 66], true), "what rounding leaves goes to the first level");
        let chosen: Vec<Choice> = (0..100).map(|roll| choose(&sick, 50.0, roll)).collect();
        assert_eq!(chosen.iter().filter(|c| c.level == 0).count(), 34);
        assert!(chosen.iter().all(|c| c.panic));
        let fine = levels(&[(2, 2), (1, 1)]);
        assert_eq!(choose(&fine, 50.0, 7), Choice { level: 0, panic: false });
    }
}
