//! Encoders and the four GLMC heads.
//!
//! Variable names follow PyTorch's `state_dict` layout, so a checkpoint saved
//! with [`crate::checkpoint`] reads in Python as
//! `encoder.layer1.0.conv1.weight`, `head.weight`, `head_cb.weight`,
//! `proj.weight`, `pred.weight`, … The ImageNet encoders use torchvision's
//! names (`encoder.layer1.0.downsample.0.weight`), so torchvision weights map
//! one to one (minus `fc.*`). BatchNorm has no `num_batches_tracked` (tch does
//! not keep it); load such checkpoints in Python with `strict=False`.

use serde::{Deserialize, Serialize};
use tch::nn::init::FanInOut::{FanIn, FanOut};
use tch::nn::{self, Init};
use tch::{TchError, Tensor};

use crate::error::{GlmcError, Result};

type TResult<T> = std::result::Result<T, TchError>;

/// The encoder architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arch {
    /// ResNet-32 for 32×32 inputs, 5+5+5 basic blocks with option-A
    /// (subsample + zero channel padding) shortcuts. Channels are
    /// `width, 2·width, 4·width`; the authors' `resnet32_fe` uses 64.
    #[serde(rename = "resnet32")]
    ResNet32 { width: i64 },
    /// torchvision ResNet-50 (ImageNet stem, bottlenecks [3, 4, 6, 3]).
    #[serde(rename = "resnet50")]
    ResNet50,
    /// torchvision ResNeXt-50 32×4d.
    #[serde(rename = "resnext50_32x4d")]
    ResNeXt50_32x4d,
}

impl Arch {
    /// The ResNet-32 of the GLMC code (base width 64).
    pub const RESNET32: Arch = Arch::ResNet32 { width: 64 };

    /// Dimension of the encoder feature h.
    pub fn feature_dim(&self) -> i64 {
        match *self {
            Arch::ResNet32 { width } => 4 * width,
            Arch::ResNet50 | Arch::ResNeXt50_32x4d => 2048,
        }
    }

    /// The projection dimension d of the heads P and Q: 128 for ResNet-32, 256 for
    /// the ImageNet models.
    pub fn default_proj_dim(&self) -> i64 {
        match self {
            Arch::ResNet32 { .. } => 128,
            Arch::ResNet50 | Arch::ResNeXt50_32x4d => 256,
        }
    }
}

/// Settings of a [`GlmcNet`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    pub num_classes: i64,
    /// Projection dimension d; `None` takes [`Arch::default_proj_dim`].
    #[serde(default)]
    pub proj_dim: Option<i64>,
    /// Image channels (3; 1 for grayscale data such as Fashion-MNIST).
    #[serde(default = "three")]
    pub in_channels: i64,
}

fn three() -> i64 {
    3
}

impl ModelConfig {
    pub fn new(arch: Arch, num_classes: i64) -> Self {
        ModelConfig { arch, num_classes, proj_dim: None, in_channels: 3 }
    }
    pub fn with_in_channels(mut self, c: i64) -> Self {
        self.in_channels = c;
        self
    }
    pub fn with_proj_dim(mut self, d: i64) -> Self {
        self.proj_dim = Some(d);
        self
    }
    pub fn proj_dim(&self) -> i64 {
        self.proj_dim.unwrap_or_else(|| self.arch.default_proj_dim())
    }
}

// ---------------------------------------------------------------------------
// Layers with fallible forwards (tch's nn layers panic on error).
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Conv {
    ws: Tensor,
    stride: i64,
    padding: i64,
    groups: i64,
}

/// Kaiming-normal initialisation with ReLU gain (std √2 / √fan), as
/// PyTorch's `kaiming_normal_(w)` (`FanIn`) or
/// `kaiming_normal_(w, mode='fan_out', nonlinearity='relu')` (`FanOut`).
fn kaiming_normal(fan: nn::init::FanInOut) -> Init {
    Init::Kaiming { dist: nn::init::NormalOrUniform::Normal, fan, non_linearity: nn::init::NonLinearity::ReLU }
}

impl Conv {
    /// `fan` follows the authors' code: fan-in for the CIFAR ResNet-32
    /// (`_weights_init` in model/ResNet_cifar.py), fan-out for the ImageNet
    /// encoders (model/Resnet_LT.py, as torchvision).
    /// A `k`×`k` convolution with `(k, stride, padding)`.
    fn new(p: nn::Path, cin: i64, cout: i64, (k, stride, padding): (i64, i64, i64), groups: i64, fan: nn::init::FanInOut) -> Self {
        let ws = p.var("weight", &[cout, cin / groups, k, k], kaiming_normal(fan));
        Conv { ws, stride, padding, groups }
    }
    fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        x.f_conv2d::<&Tensor>(&self.ws, None, [self.stride; 2], [self.padding; 2], [1, 1], self.groups)
    }
}

#[derive(Debug)]
struct Bn {
    ws: Tensor,
    bs: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl Bn {
    const EPS: f64 = 1e-5;
    const MOMENTUM: f64 = 0.1;
    fn new(p: nn::Path, c: i64) -> Self {
        Bn {
            ws: p.var("weight", &[c], Init::Const(1.0)),
            bs: p.var("bias", &[c], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[c]),
            running_var: p.ones_no_train("running_var", &[c]),
        }
    }
    fn forward(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        x.f_batch_norm(
            Some(&self.ws),
            Some(&self.bs),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            Self::MOMENTUM,
            Self::EPS,
            true,
        )
    }
}

/// A linear layer. The bias always has PyTorch's default initialization
/// U(−1/√in, 1/√in); the weight has either that default or Kaiming normal
/// (fan-in, gain √2), see [`LinearInit`].
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Tensor,
}

/// How a [`Linear`] weight starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinearInit {
    /// `nn.Linear`'s own U(−1/√in, 1/√in) (the authors' ImageNet model).
    Default,
    /// `init.kaiming_normal_(m.weight)`: N(0, 2/in), the authors'
    /// `_weights_init`, applied to every Linear of the CIFAR model (fc,
    /// fc_cb, projection and predictor) — about 2.45× the default's std.
    KaimingNormal,
}

impl Linear {
    fn new(p: nn::Path, cin: i64, cout: i64, init: LinearInit) -> Self {
        let b = 1.0 / (cin as f64).sqrt();
        let w = match init {
            LinearInit::Default => Init::Uniform { lo: -b, up: b },
            LinearInit::KaimingNormal => kaiming_normal(FanIn),
        };
        Linear { ws: p.var("weight", &[cout, cin], w), bs: p.var("bias", &[cout], Init::Uniform { lo: -b, up: b }) }
    }
    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        x.f_linear(&self.ws, Some(&self.bs))
    }
}

// ---------------------------------------------------------------------------
// ResNet-32 (CIFAR)
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct BasicBlock {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    stride: i64,
    /// Option-A shortcut: zero channels added (below, above).
    pad: Option<(i64, i64)>,
}

impl BasicBlock {
    fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let pad = (stride != 1 || cin != cout).then(|| {
            let lo = (cout - cin) / 2;
            (lo, cout - cin - lo)
        });
        BasicBlock {
            conv1: Conv::new(&p / "conv1", cin, cout, (3, stride, 1), 1, FanIn),
            bn1: Bn::new(&p / "bn1", cout),
            conv2: Conv::new(&p / "conv2", cout, cout, (3, 1, 1), 1, FanIn),
            bn2: Bn::new(&p / "bn2", cout),
            stride,
            pad,
        }
    }
    fn forward(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let out = self.bn1.forward(&self.conv1.forward(x)?, train)?.f_relu()?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?, train)?;
        let sc = match self.pad {
            // x[:, :, ::s, ::s] padded with zero channels (option A).
            Some((lo, hi)) => {
                x.f_slice(2, 0, None, self.stride)?.f_slice(3, 0, None, self.stride)?.f_constant_pad_nd([0, 0, 0, 0, lo, hi])?
            }
            None => x.shallow_clone(),
        };
        out.f_add(&sc)?.f_relu()
    }
}

#[derive(Debug)]
struct ResNet32 {
    conv1: Conv,
    bn1: Bn,
    layers: Vec<Vec<BasicBlock>>,
}

impl ResNet32 {
    fn new(p: nn::Path, width: i64, in_channels: i64) -> Self {
        let mut layers = Vec::new();
        let mut cin = width;
        for (i, (planes, stride)) in [(width, 1), (2 * width, 2), (4 * width, 2)].into_iter().enumerate() {
            let lp = &p / format!("layer{}", i + 1);
            let blocks = (0..5)
                .map(|j| {
                    let b = BasicBlock::new(&lp / j, cin, planes, if j == 0 { stride } else { 1 });
                    cin = planes;
                    b
                })
                .collect();
            layers.push(blocks);
        }
        ResNet32 { conv1: Conv::new(&p / "conv1", in_channels, width, (3, 1, 1), 1, FanIn), bn1: Bn::new(&p / "bn1", width), layers }
    }
    fn forward(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let mut x = self.bn1.forward(&self.conv1.forward(x)?, train)?.f_relu()?;
        for b in self.layers.iter().flatten() {
            x = b.forward(&x, train)?;
        }
        x.f_mean_dim([2i64, 3].as_slice(), false, None)
    }
}

// ---------------------------------------------------------------------------
// ResNet-50 / ResNeXt-50 (ImageNet stem, torchvision layout)
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Bottleneck {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    conv3: Conv,
    bn3: Bn,
    downsample: Option<(Conv, Bn)>,
}

impl Bottleneck {
    fn new(p: nn::Path, cin: i64, planes: i64, stride: i64, groups: i64, base_width: i64) -> Self {
        let width = planes * base_width / 64 * groups;
        let cout = planes * 4;
        let downsample = (stride != 1 || cin != cout).then(|| {
            let d = &p / "downsample";
            (Conv::new(&d / "0", cin, cout, (1, stride, 0), 1, FanOut), Bn::new(&d / "1", cout))
        });
        Bottleneck {
            conv1: Conv::new(&p / "conv1", cin, width, (1, 1, 0), 1, FanOut),
            bn1: Bn::new(&p / "bn1", width),
            // torchvision v1.5: the stride sits on the 3×3 convolution.
            conv2: Conv::new(&p / "conv2", width, width, (3, stride, 1), groups, FanOut),
            bn2: Bn::new(&p / "bn2", width),
            conv3: Conv::new(&p / "conv3", width, cout, (1, 1, 0), 1, FanOut),
            bn3: Bn::new(&p / "bn3", cout),
            downsample,
        }
    }
    fn forward(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let out = self.bn1.forward(&self.conv1.forward(x)?, train)?.f_relu()?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?, train)?.f_relu()?;
        let out = self.bn3.forward(&self.conv3.forward(&out)?, train)?;
        let sc = match &self.downsample {
            Some((c, b)) => b.forward(&c.forward(x)?, train)?,
            None => x.shallow_clone(),
        };
        out.f_add(&sc)?.f_relu()
    }
}

#[derive(Debug)]
struct ResNetImageNet {
    conv1: Conv,
    bn1: Bn,
    layers: Vec<Vec<Bottleneck>>,
}

impl ResNetImageNet {
    fn new(p: nn::Path, groups: i64, base_width: i64, in_channels: i64) -> Self {
        let mut cin = 64;
        let mut layers = Vec::new();
        for (i, (n, planes, stride)) in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)].into_iter().enumerate() {
            let lp = &p / format!("layer{}", i + 1);
            let blocks = (0..n)
                .map(|j| {
                    let b = Bottleneck::new(&lp / j, cin, planes, if j == 0 { stride } else { 1 }, groups, base_width);
                    cin = planes * 4;
                    b
                })
                .collect();
            layers.push(blocks);
        }
        ResNetImageNet { conv1: Conv::new(&p / "conv1", in_channels, 64, (7, 2, 3), 1, FanOut), bn1: Bn::new(&p / "bn1", 64), layers }
    }
    fn forward(&self, x: &Tensor, train: bool) -> TResult<Tensor> {
        let x = self.bn1.forward(&self.conv1.forward(x)?, train)?.f_relu()?;
        let mut x = x.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for b in self.layers.iter().flatten() {
            x = b.forward(&x, train)?;
        }
        x.f_mean_dim([2i64, 3].as_slice(), false, None)
    }
}

#[derive(Debug)]
enum Encoder {
    Cifar(ResNet32),
    ImageNet(ResNetImageNet),
}

/// Which of the optional heads a forward pass evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSet {
    /// The projection P and predictor Q (skipped when κ = 0).
    pub proj: bool,
}

impl Default for HeadSet {
    fn default() -> Self {
        HeadSet { proj: true }
    }
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct Outputs {
    /// Encoder feature h.
    pub feat: Tensor,
    /// Conventional head g(h).
    pub logits: Tensor,
    /// Re-balanced head g_cb(h).
    pub logits_cb: Tensor,
    /// Projection z = P(h) (None when the projection was skipped).
    pub z: Option<Tensor>,
    /// Prediction u = Q(z).
    pub u: Option<Tensor>,
}

/// Encoder f plus the heads g, g_cb, P and Q of GLMC.
#[derive(Debug)]
pub struct GlmcNet {
    encoder: Encoder,
    pub head: Linear,
    pub head_cb: Linear,
    pub proj: Linear,
    pub pred: Linear,
    config: ModelConfig,
}

impl GlmcNet {
    /// Creates the variables under `p` (usually `vs.root()`), named
    /// `encoder.*`, `head.*`, `head_cb.*`, `proj.*`, `pred.*`.
    pub fn try_new(p: &nn::Path, config: ModelConfig) -> Result<Self> {
        if config.num_classes < 1 {
            return Err(GlmcError::setting("num_classes", format!("{} (must be >= 1)", config.num_classes)));
        }
        if let Arch::ResNet32 { width } = config.arch {
            if width < 2 || width % 2 != 0 {
                return Err(GlmcError::setting("width", format!("{width} (must be even and >= 2)")));
            }
        }
        if config.in_channels < 1 {
            return Err(GlmcError::setting("in_channels", format!("{} (must be >= 1)", config.in_channels)));
        }
        let d = config.proj_dim();
        if d < 1 {
            return Err(GlmcError::setting("proj_dim", format!("{d} (must be >= 1)")));
        }
        let ep = p / "encoder";
        let encoder = match config.arch {
            Arch::ResNet32 { width } => Encoder::Cifar(ResNet32::new(ep, width, config.in_channels)),
            Arch::ResNet50 => Encoder::ImageNet(ResNetImageNet::new(ep, 1, 64, config.in_channels)),
            Arch::ResNeXt50_32x4d => Encoder::ImageNet(ResNetImageNet::new(ep, 32, 4, config.in_channels)),
        };
        let h = config.arch.feature_dim();
        // The authors' init: `_weights_init` re-initialises every Linear of
        // the CIFAR model; the ImageNet model leaves them at nn.Linear's.
        let li = match config.arch {
            Arch::ResNet32 { .. } => LinearInit::KaimingNormal,
            Arch::ResNet50 | Arch::ResNeXt50_32x4d => LinearInit::Default,
        };
        Ok(GlmcNet {
            encoder,
            head: Linear::new(p / "head", h, config.num_classes, li),
            head_cb: Linear::new(p / "head_cb", h, config.num_classes, li),
            proj: Linear::new(p / "proj", h, d, li),
            pred: Linear::new(p / "pred", d, d, li),
            config,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The encoder feature h = f(x).
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match &self.encoder {
            Encoder::Cifar(e) => e.forward(x, train)?,
            Encoder::ImageNet(e) => e.forward(x, train)?,
        })
    }

    /// All heads.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Outputs> {
        self.forward_heads(x, train, HeadSet::default())
    }

    /// The heads selected by `heads`; g and g_cb are always evaluated (cheap).
    pub fn forward_heads(&self, x: &Tensor, train: bool, heads: HeadSet) -> Result<Outputs> {
        let feat = self.features(x, train)?;
        self.heads_from_features(feat, heads)
    }

    /// Applies the heads to a feature h (used by classifier fine-tuning with a
    /// frozen encoder).
    pub fn heads_from_features(&self, feat: Tensor, heads: HeadSet) -> Result<Outputs> {
        let logits = self.head.forward(&feat)?;
        let logits_cb = self.head_cb.forward(&feat)?;
        let (z, u) = if heads.proj {
            let z = self.proj.forward(&feat)?;
            let u = self.pred.forward(&z)?;
            (Some(z), Some(u))
        } else {
            (None, None)
        };
        Ok(Outputs { feat, logits, logits_cb, z, u })
    }
}

impl nn::ModuleT for GlmcNet {
    /// The re-balanced head's logits (what long-tailed inference uses).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self.forward_heads(xs, train, HeadSet { proj: false }) {
            Ok(o) => o.logits_cb,
            Err(e) => panic!("GlmcNet::forward_t: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    /// Sample standard deviation, and the tolerance for it: 6 standard errors
    /// of a normal sample's std (≈ σ/√(2n)), so the check fails by chance
    /// about once in 10⁹ runs while the default and Kaiming scales (2.45×
    /// apart) stay far outside each other's band.
    fn std_and_tol(t: &Tensor) -> (f64, f64) {
        let n = t.numel() as f64;
        let s = t.to_kind(Kind::Double).std(true).double_value(&[]);
        (s, 6.0 / (2.0 * n).sqrt())
    }

    fn vars(arch: Arch, classes: i64, in_channels: i64) -> Vec<(String, Tensor)> {
        let vs = VarStore::new(Device::Cpu);
        let _net = GlmcNet::try_new(&vs.root(), ModelConfig::new(arch, classes).with_in_channels(in_channels)).unwrap();
        let mut v: Vec<_> = vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The authors' `_weights_init` (model/ResNet_cifar.py), applied by
    /// `self.apply(_weights_init)` to every module of ResNet_modify:
    /// ```python
    /// if isinstance(m, nn.Linear) or isinstance(m, nn.Conv2d):
    ///     init.kaiming_normal_(m.weight)
    /// ```
    /// so every conv and every Linear weight (fc, fc_cb, projection_head,
    /// contrast_head) has std √(2 / fan_in); biases keep nn.Linear's
    /// U(±1/√fan_in); BatchNorm starts at (1, 0).
    #[test]
    fn resnet32_weights_follow_the_authors_weights_init() {
        let mut checked = 0;
        let vs = vars(Arch::ResNet32 { width: 16 }, 10, 1);
        let fan_in_of = |prefix: &str| vs.iter().find(|(n, _)| *n == format!("{prefix}.weight")).map(|(_, w)| w.size()[1]);
        for (name, t) in &vs {
            let size = t.size();
            if name.ends_with(".weight") && size.len() >= 2 {
                let fan_in = size[1..].iter().product::<i64>() as f64;
                let want = (2.0 / fan_in).sqrt();
                let (got, tol) = std_and_tol(t);
                assert!((got / want - 1.0).abs() < tol, "{name}: std {got:.5}, kaiming_normal_ gives {want:.5}");
                checked += 1;
            } else if let Some(prefix) = name.strip_suffix(".bias").filter(|p| !p.contains("bn")) {
                let bound = 1.0 / (fan_in_of(prefix).unwrap() as f64).sqrt();
                assert!(t.abs().max().double_value(&[]) <= bound, "{name} outside U(±1/√fan_in)");
            }
        }
        // 31 convolutions + 4 Linear weights.
        assert_eq!(checked, 35);
    }

    /// The authors' ImageNet model (model/Resnet_LT.py):
    /// ```python
    /// if isinstance(m, nn.Conv2d):
    ///     nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    /// ```
    /// and nn.Linear's default for the heads.
    #[test]
    fn resnext50_convolutions_are_fan_out_and_heads_keep_the_linear_default() {
        let mut convs = 0;
        for (name, t) in vars(Arch::ResNeXt50_32x4d, 10, 3) {
            let size = t.size();
            if !name.ends_with(".weight") || size.len() < 2 {
                continue;
            }
            let (got, tol) = std_and_tol(&t);
            if size.len() == 4 {
                let fan_out = (size[0] * size[2] * size[3]) as f64;
                let want = (2.0 / fan_out).sqrt();
                assert!((got / want - 1.0).abs() < tol, "{name}: std {got:.6}, fan-out kaiming gives {want:.6}");
                convs += 1;
            } else {
                let bound = 1.0 / (size[1] as f64).sqrt();
                let want = bound / 3f64.sqrt();
                assert!((got / want - 1.0).abs() < tol, "{name}: std {got:.6}, U(±1/√in) gives {want:.6}");
                assert!(t.abs().max().double_value(&[]) <= bound);
            }
        }
        assert_eq!(convs, 53);
    }
}
