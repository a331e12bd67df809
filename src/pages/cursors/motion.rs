//! How a remote cursor moves between the positions that reach the board.
//!
//! Updates arrive at most ~30 times a second, unevenly. Jumping to each one stutters, and a
//! CSS transition towards each restarts at every update. Instead, as perfect-cursors does,
//! the cursor travels a spline through the received points one update behind: each new point
//! adds a segment that takes as long as the time since the previous point, so the mark reaches
//! a point just as the next is due and never stops while updates keep coming. A long pause
//! gives a short glide (at most [`LONGEST_SEGMENT_MS`]), and a cursor that falls more than
//! [`MOST_BEHIND`] segments behind (a busy page) skips ahead rather than lag.

/// A position on the board, as fractions of its width and height (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// From the left edge.
    pub x: f64,
    /// From the top edge.
    pub y: f64,
}

/// The longest one segment may take, in milliseconds.
pub const LONGEST_SEGMENT_MS: f64 = 300.0;
/// Segments a cursor may have left to play before it skips ahead.
pub const MOST_BEHIND: usize = 3;

/// One remote cursor's way through its received points.
#[derive(Debug, Clone, PartialEq)]
pub struct Motion {
    /// Points still needed, oldest first: the one before the current segment (the spline's
    /// context), the segment's ends, and the points waiting.
    points: Vec<Point>,
    /// How long each segment takes: `durations[i]` runs from `points[i]` to `points[i + 1]`.
    durations: Vec<f64>,
    /// The segment playing; equal to the last point's index when the cursor rests there.
    segment: usize,
    /// When the playing segment started.
    started: f64,
    /// When the latest point arrived.
    arrived: f64,
    /// Glide between points; without it (the reader asked for less motion) the cursor jumps.
    smooth: bool,
}

impl Motion {
    /// A cursor resting at `at` since `now`.
    pub fn new(at: Point, now: f64, smooth: bool) -> Self {
        Self {
            points: vec![at],
            durations: Vec::new(),
            segment: 0,
            started: now,
            arrived: now,
            smooth,
        }
    }

    /// A new position arrived at `now`.
    pub fn add(&mut self, to: Point, now: f64) {
        if !self.smooth {
            *self = Self::new(to, now, false);
            return;
        }
        self.advance(now);
        let resting = self.segment + 1 >= self.points.len();
        let duration = (now - self.arrived).clamp(1.0, LONGEST_SEGMENT_MS);
        self.points.push(to);
        self.durations.push(duration);
        self.arrived = now;
        if resting {
            self.started = now;
        }
        let behind = self.points.len() - 1 - self.segment;
        if behind > MOST_BEHIND {
            self.segment = self.points.len() - 1 - MOST_BEHIND;
            self.started = now;
        }
        self.forget_played();
    }

    /// Where the cursor is drawn at `now`, and whether it is still moving.
    pub fn at(&mut self, now: f64) -> (Point, bool) {
        self.advance(now);
        let last = self.points.len() - 1;
        if self.segment >= last {
            return (self.points[last], false);
        }
        let i = self.segment;
        let t = ((now - self.started) / self.durations[i]).clamp(0.0, 1.0);
        let before = self.points[i.saturating_sub(1)];
        let after = self.points[(i + 2).min(last)];
        (
            catmull_rom(before, self.points[i], self.points[i + 1], after, t),
            true,
        )
    }

    /// Moves past the segments that have finished by `now`.
    fn advance(&mut self, now: f64) {
        while self.segment + 1 < self.points.len()
            && now >= self.started + self.durations[self.segment]
        {
            self.started += self.durations[self.segment];
            self.segment += 1;
        }
        self.forget_played();
    }

    /// Drops points no segment still needs (all but one before the playing segment).
    fn forget_played(&mut self) {
        let drop = self.segment.saturating_sub(1);
        if drop > 0 {
            self.points.drain(..drop);
            self.durations.drain(..drop);
            self.segment -= drop;
        }
    }
}

/// The uniform Catmull-Rom spline from `p1` to `p2` at `t` (0 to 1), shaped by their
/// neighbours `p0` and `p3`: it passes through every point, with no corners.
fn catmull_rom(p0: Point, p1: Point, p2: Point, p3: Point, t: f64) -> Point {
    let (t2, t3) = (t * t, t * t * t);
    let along = |a: f64, b: f64, c: f64, d: f64| {
        0.5 * ((2.0 * b)
            + (-a + c) * t
            + (2.0 * a - 5.0 * b + 4.0 * c - d) * t2
            + (-a + 3.0 * b - 3.0 * c + d) * t3)
    };
    Point {
        x: along(p0.x, p1.x, p2.x, p3.x),
        y: along(p0.y, p1.y, p2.y, p3.y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64, y: f64) -> Point {
        Point { x, y }
    }

    fn close(a: Point, b: Point) -> bool {
        (a.x - b.x).abs() < 1e-9 && (a.y - b.y).abs() < 1e-9
    }

    #[test]
    fn a_new_point_is_reached_as_the_next_one_is_due() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, true);
        motion.add(p(0.5, 0.0), 50.0);
        // The first segment takes as long as the gap before it: 50 ms from its arrival.
        let (halfway, moving) = motion.at(75.0);
        assert!(moving);
        assert!(halfway.x > 0.1 && halfway.x < 0.4, "{halfway:?}");
        assert_eq!(motion.at(100.0), (p(0.5, 0.0), false));
        assert_eq!(motion.at(1000.0), (p(0.5, 0.0), false));
    }

    #[test]
    fn steady_updates_play_back_to_back_through_every_point() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, true);
        let points = [p(0.1, 0.2), p(0.3, 0.1), p(0.5, 0.4), p(0.6, 0.6)];
        for (n, point) in points.iter().enumerate() {
            motion.add(*point, 33.0 * (n + 1) as f64);
            // One update behind: when a point arrives, the previous one is being reached.
            let (at, moving) = motion.at(33.0 * (n + 1) as f64);
            assert!(moving);
            let previous = if n == 0 { p(0.0, 0.0) } else { points[n - 1] };
            assert!(close(at, previous), "{at:?} is not {previous:?}");
        }
        assert_eq!(motion.at(33.0 * 5.0), (p(0.6, 0.6), false));
    }

    #[test]
    fn the_path_bends_through_points_without_corners() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, true);
        motion.add(p(0.5, 0.5), 100.0);
        motion.add(p(1.0, 0.0), 150.0);
        // The middle point is reached at 200 ms. Just before and after it the path moves the
        // same way (no corner): rightwards, at the top of its arc.
        let (before, _) = motion.at(198.0);
        let (middle, _) = motion.at(200.0);
        let (after, _) = motion.at(201.0);
        assert!(close(middle, p(0.5, 0.5)));
        assert!(before.x < middle.x && middle.x < after.x);
        let slope_in = (middle.y - before.y) / (middle.x - before.x);
        let slope_out = (after.y - middle.y) / (after.x - middle.x);
        assert!(
            (slope_in - slope_out).abs() < 0.2,
            "{slope_in} vs {slope_out}"
        );
    }

    #[test]
    fn after_a_pause_the_cursor_glides_briefly_instead_of_crawling() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, true);
        motion.add(p(1.0, 1.0), 10_000.0);
        assert!(motion.at(10_000.0 + LONGEST_SEGMENT_MS / 2.0).1);
        assert_eq!(
            motion.at(10_000.0 + LONGEST_SEGMENT_MS),
            (p(1.0, 1.0), false)
        );
    }

    #[test]
    fn a_cursor_far_behind_skips_ahead() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, true);
        // A burst: ten points within a millisecond each of a slow first one.
        motion.add(p(0.1, 0.0), 300.0);
        for n in 2..=10 {
            motion.add(p(0.1 * n as f64, 0.0), 300.0 + n as f64);
        }
        assert!(motion.points.len() <= MOST_BEHIND + 2);
        let (at, _) = motion.at(311.0 + LONGEST_SEGMENT_MS);
        assert_eq!(at, p(1.0, 0.0));
    }

    #[test]
    fn without_smooth_motion_the_cursor_jumps() {
        let mut motion = Motion::new(p(0.0, 0.0), 0.0, false);
        motion.add(p(0.7, 0.3), 33.0);
        assert_eq!(motion.at(33.0), (p(0.7, 0.3), false));
    }
}
