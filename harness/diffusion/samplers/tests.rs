use super::*;
use crate::data::gmm::Oracle;
use crate::data::{Gmm, NoiseBank};
use crate::diffusion::{Evaluator, FinalPoint, Grid, Model, PredictionType, Schedule, Spacing, Time};

/// diffusers' scheduler-test model: ε̂ = sample · t/(t + 1), fed the integer timestep.
struct DummyEps;

impl Model for DummyEps {
    fn dim(&self) -> usize {
        1
    }
    fn prediction(&self) -> PredictionType {
        PredictionType::Epsilon
    }
    fn output(&self, x: &[f64], at: Time, _: Option<&[usize]>) -> Vec<f64> {
        x.iter().map(|v| v * at.t / (at.t + 1.0)).collect()
    }
}

/// diffusers' `dummy_sample_deter`: the values 0 … 767 divided by 768 (the order of the
/// elements does not matter to an elementwise model and the summed magnitudes).
fn dummy_sample() -> Vec<f64> {
    (0..768).map(|i| i as f64 / 768.0).collect()
}

fn run_dummy(sampler: Sampler, grid: &Grid, clip: Option<f64>) -> Vec<f64> {
    let model = DummyEps;
    let mut ev = Evaluator::new(&model);
    ev.clip_x0 = clip;
    let mut bank = NoiseBank::fixed(dummy_sample(), 1);
    sample(sampler, &mut ev, grid, &mut bank)
}

#[test]
fn ddim_matches_diffusers_golden_full_loop() {
    // tests/schedulers/test_scheduler_ddim.py::test_full_loop_no_noise: linear betas,
    // clip_sample, set_alpha_to_one, leading spacing with offset 0, 10 steps, η = 0.
    let grid = Grid::new(&Schedule::linear(), Spacing::Leading { offset: 0 }, 10, FinalPoint::Zero);
    let x = run_dummy(Sampler::Ddim { eta: 0.0 }, &grid, Some(1.0));
    let sum: f64 = x.iter().map(|v| v.abs()).sum();
    assert!((sum - 172.0067).abs() < 1e-2, "{sum}");
    assert!((sum / 768.0 - 0.223967).abs() < 1e-3);
}

#[test]
fn ddim_diffusers_lands_where_diffusers_does() {
    // Values from diffusers' DDIMScheduler itself (tests/reference/diffusers_ddim_real.py:
    // diffusers 0.42.1, torch 2.15.0; 172.006709 with leading spacing, its own golden value).
    // The harness computes in f64 over f32 ᾱ, diffusers in f32 throughout: they agree to about
    // 1e-6 relative. The grid rule's values (and the same loops in f32 NumPy, agreeing to 1e-6
    // with diffusers') are from tests/reference/diffusers_ddim.py.
    let f32_linear = Schedule { float32: true, ..Schedule::linear() };
    let sum = |sampler, spacing, n| {
        let grid = Grid::new(&f32_linear, spacing, n, FinalPoint::Zero);
        run_dummy(sampler, &grid, Some(1.0)).iter().map(|v| v.abs()).sum::<f64>()
    };
    let diffusers = Sampler::DdimDiffusers { eta: 0.0 };
    let ddim = Sampler::Ddim { eta: 0.0 };
    for (spacing, n, want, grid_want) in
        [(Spacing::Linspace, 10, 191.253970, 169.464239), (Spacing::Trailing, 3, 105.149170, 105.005340)]
    {
        let (got, on_grid) = (sum(diffusers, spacing, n), sum(ddim, spacing, n));
        assert!((got / want - 1.0).abs() < 1e-5, "{spacing:?} n={n}: {got}, diffusers {want}");
        // The two landing rules differ by far more than the tolerance: the test can tell them apart.
        assert!((on_grid / want - 1.0).abs() > 1e-3);
        assert!((on_grid / grid_want - 1.0).abs() < 1e-5, "{spacing:?} n={n}: {on_grid}, transcription {grid_want}");
    }
    // With leading spacing the two rules agree: t − T//n is the next grid point.
    let lead = Spacing::Leading { offset: 0 };
    assert!((sum(diffusers, lead, 10) - sum(ddim, lead, 10)).abs() < 1e-9);
    assert!((sum(diffusers, lead, 10) - 172.0067).abs() < 1e-2);
}

#[test]
fn float32_schedule_holds_alpha_bar_in_f32() {
    let (a, b) =
        (Schedule { float32: true, ..Schedule::linear() }.alphas_cumprod(), Schedule::linear().alphas_cumprod());
    assert!(a.iter().all(|v| f64::from(*v as f32) == *v));
    let worst = a.iter().zip(&b).map(|(x, y)| (x / y - 1.0).abs()).fold(0.0, f64::max);
    // A thousand f32 products drift from f64 by far less than a percent, but not by nothing.
    assert!(worst > 0.0 && worst < 1e-4, "{worst}");
}

#[test]
fn dpmpp_2m_matches_diffusers_golden_full_loop() {
    // tests/schedulers/test_scheduler_dpm_multi.py full loop: dpmsolver++, midpoint, order 2,
    // lower_order_final False, final_sigmas_type "sigma_min", 10 steps, linspace spacing.
    let grid = Grid::new(&Schedule::linear(), Spacing::LinspaceDropZero, 10, FinalPoint::AlphaBar0);
    let x = run_dummy(Sampler::DpmSolverPp2m { lower_order_final: false }, &grid, None);
    let mean = x.iter().map(|v| v.abs()).sum::<f64>() / 768.0;
    assert!((mean - 0.3301).abs() < 1e-3, "{mean}");
    // And the library default final point moves it, as docs/methods.md §8.1 records (0.2409).
    let zero = Grid::new(&Schedule::linear(), Spacing::LinspaceDropZero, 10, FinalPoint::Zero);
    let x = run_dummy(Sampler::DpmSolverPp2m { lower_order_final: false }, &zero, None);
    let mean0 = x.iter().map(|v| v.abs()).sum::<f64>() / 768.0;
    assert!((mean0 - 0.2409).abs() < 1e-3, "{mean0}");
}

/// One Gaussian N(0, s²) in 1-D: the PF-ODE keeps x/√(α²s² + σ²) fixed, so the exact map
/// from the first grid point to the end is a known scale.
fn scale_error(sampler: Sampler, steps: usize) -> f64 {
    let s = 0.5;
    let g = Gmm { dim: 1, means: vec![0.0], stds: vec![s], weights: vec![1.0], class_of: vec![0], classes: 1 };
    let grid = Grid::new(
        &Schedule::linear(),
        Spacing::UniformLambda { lambda_min: -6.0, lambda_max: 6.0 },
        steps,
        FinalPoint::AlphaBar0,
    );
    let oracle = Oracle(&g);
    let mut ev = Evaluator::new(&oracle);
    let out = sample(sampler, &mut ev, &grid, &mut NoiseBank::fixed(vec![1.0], 1));
    let m = |t: Time| (t.alpha * t.alpha * s * s + t.sigma * t.sigma).sqrt();
    out[0] / (m(grid.end) / m(grid.points[0])) - 1.0
}

fn order(sampler: Sampler) -> f64 {
    let ns = [16.0, 32.0, 64.0, 128.0, 256.0];
    let errs: Vec<f64> = ns.iter().map(|n| scale_error(sampler, *n as usize).abs()).collect();
    -crate::fit::power_law(&ns, &errs).unwrap().exponent
}

#[test]
fn convergence_orders_on_a_uniform_lambda_grid() {
    let ddim = order(Sampler::Ddim { eta: 0.0 });
    let dpm = order(Sampler::DpmSolverPp2m { lower_order_final: false });
    let euler = order(Sampler::Euler);
    let heun = order(Sampler::Heun);
    assert!((ddim - 1.0).abs() < 0.1, "DDIM order {ddim}");
    assert!((dpm - 2.0).abs() < 0.2, "DPM-Solver++(2M) order {dpm}");
    assert!((euler - 1.0).abs() < 0.15, "Euler order {euler}");
    assert!((heun - 2.0).abs() < 0.25, "Heun order {heun}");
    // Negative control: without its second-order term DPM-Solver++ is first order.
    let broken = order(Sampler::DpmSolverPp2mFirstOrder);
    assert!((broken - 1.0).abs() < 0.1, "{broken}");
}

#[test]
fn ddim_is_dpmpp_first_order_and_heun_counts_2n_minus_1() {
    let g = Gmm {
        dim: 2,
        means: vec![1.0, 0.0, -1.0, 0.0],
        stds: vec![0.3; 4],
        weights: vec![0.5, 0.5],
        class_of: vec![0, 1],
        classes: 2,
    };
    let grid = Grid::new(&Schedule::linear(), Spacing::Trailing, 8, FinalPoint::Zero);
    let oracle = Oracle(&g);
    let run = |s: Sampler| {
        let mut ev = Evaluator::new(&oracle);
        let x = sample(s, &mut ev, &grid, &mut NoiseBank::new(3, 0, 16, 2));
        (x, ev.nfe)
    };
    let (a, na) = run(Sampler::Ddim { eta: 0.0 });
    let (b, _) = run(Sampler::DpmSolverPp2mFirstOrder);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-9);
    }
    assert_eq!(na, 8);
    assert_eq!(run(Sampler::Heun).1, 15);
}

#[test]
fn guidance_doubles_nfe_and_w1_is_the_conditional_model() {
    let g = Gmm {
        dim: 1,
        means: vec![1.0, -1.0],
        stds: vec![0.2; 2],
        weights: vec![0.5, 0.5],
        class_of: vec![0, 1],
        classes: 2,
    };
    let oracle = Oracle(&g);
    let grid = Grid::new(&Schedule::linear(), Spacing::Trailing, 5, FinalPoint::Zero);
    let class = [0usize; 4];
    let run = |w: f64| {
        let mut ev = Evaluator::new(&oracle);
        ev.class = Some(&class);
        ev.guidance = w;
        let x = sample(Sampler::Ddim { eta: 0.0 }, &mut ev, &grid, &mut NoiseBank::new(1, 0, 4, 1));
        (x, ev.nfe)
    };
    let (x1, n1) = run(1.0);
    let (x3, n3) = run(3.0);
    assert_eq!((n1, n3), (5, 10));
    // Guidance pushes samples further into their class (mean +1).
    assert!(x3.iter().sum::<f64>() > x1.iter().sum::<f64>());
}

#[test]
fn ddpm_and_ddim_eta_are_stochastic_and_reproducible() {
    let g = Gmm { dim: 1, means: vec![0.0], stds: vec![0.5], weights: vec![1.0], class_of: vec![0], classes: 1 };
    let oracle = Oracle(&g);
    let grid = Grid::new(&Schedule::linear(), Spacing::Trailing, 1000, FinalPoint::Zero);
    let run = |s: Sampler, seed: u64| {
        let mut ev = Evaluator::new(&oracle);
        sample(s, &mut ev, &grid, &mut NoiseBank::new(seed, 0, 4000, 1))
    };
    let mut outs = vec![];
    for s in [
        Sampler::Ddpm { variance: Variance::FixedSmall },
        Sampler::Ddpm { variance: Variance::FixedLarge },
        Sampler::Ddim { eta: 1.0 },
    ] {
        let a = run(s, 5);
        assert_eq!(a, run(s, 5));
        // The full 1000-step chain with an exact denoiser: variance s² = 0.25, to sampling
        // error (its standard error at N = 4000 is 0.0056).
        let var = a.iter().map(|v| v * v).sum::<f64>() / a.len() as f64;
        assert!((var - 0.25).abs() < 0.02, "{s:?}: {var}");
        outs.push(a);
    }
    // DDPM with the posterior variance is DDIM with η = 1 (docs/methods.md §2.3).
    for (x, y) in outs[0].iter().zip(&outs[2]) {
        assert!((x - y).abs() < 1e-9);
    }
}
