//! The one place where a concrete Burn backend is chosen: `--backend` →
//! a device, and a generic task run on it. Everything else in gcse is generic
//! over `B: Backend` / `B: AutodiffBackend`.

use std::fmt;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::wgpu::{graphics::AutoGraphicsApi, graphics::GraphicsApi, WgpuDevice};
use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{f16, FloatDType};
#[cfg(feature = "cuda")]
use burn::{
    backend::{cuda::CudaDevice, Cuda},
    tensor::bf16,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The compute backend a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// CUDA if built in and a device exists, else a hardware WGPU adapter, else CPU.
    Auto,
    /// The CPU, through Burn's ndarray backend.
    Cpu,
    /// WGPU: Vulkan, Metal or DirectX 12, whichever the platform has (software
    /// Vulkan too, e.g. Mesa's lavapipe).
    Wgpu,
    /// CUDA (build with `--features cuda`).
    Cuda,
}

/// The floating-point types of a run: one type for every float tensor
/// (weights, activations, gradients, optimizer state), or f32 weights with
/// the encoder's matrix products in a half type (`*-mixed`, see
/// [`crate::model::autocast`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats, on every backend (CUDA's matrix products run on the
    /// tensor cores in TF32 where the autotuner finds that faster).
    #[default]
    F32,
    /// bfloat16 everywhere, no f32 master weights: CUDA only.
    Bf16,
    /// IEEE half everywhere: CUDA, and WGPU adapters with 16-bit shader floats.
    F16,
    /// f32 weights, gradients, AdamW state and checkpoints; the encoder's
    /// matrix products in bfloat16: CUDA only.
    Bf16Mixed,
    /// The same with the products in IEEE half, and the loss scaled so that
    /// small gradients survive f16's range: CUDA, and WGPU adapters with
    /// 16-bit shader floats.
    F16Mixed,
}

impl Precision {
    /// The type of the encoder's matrix products when it is not that of the
    /// weights (the mixed precisions).
    pub fn products(self) -> Option<FloatDType> {
        match self {
            Precision::Bf16Mixed => Some(FloatDType::BF16),
            Precision::F16Mixed => Some(FloatDType::F16),
            Precision::F32 | Precision::Bf16 | Precision::F16 => None,
        }
    }

    /// Whether the loss is scaled in training ([`crate::train::loss_scale`]):
    /// f16's range is too narrow for small gradients, bf16's is f32's.
    pub fn scales_loss(self) -> bool {
        self == Precision::F16Mixed
    }

    /// Whether weights and optimizer state stay f32.
    pub fn keeps_f32_weights(self) -> bool {
        matches!(
            self,
            Precision::F32 | Precision::Bf16Mixed | Precision::F16Mixed
        )
    }

    /// The half type the run computes in, if any.
    fn half(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 | Precision::Bf16Mixed => Some(FloatDType::BF16),
            Precision::F16 | Precision::F16Mixed => Some(FloatDType::F16),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::F16Mixed => "f16-mixed",
        })
    }
}

/// The device a command will run on, resolved from a [`BackendKind`].
#[derive(Debug, Clone)]
pub enum Resolved {
    /// ndarray on the CPU.
    Cpu,
    /// A WGPU adapter.
    Wgpu {
        /// Burn's handle of the adapter.
        device: WgpuDevice,
        /// Adapter name, graphics API and kind, for printing.
        description: String,
        /// Whether the adapter computes with 16-bit floats in shaders.
        shader_f16: bool,
    },
    /// A CUDA device by index.
    #[cfg(feature = "cuda")]
    Cuda {
        /// Device ordinal.
        index: usize,
    },
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::Cpu => write!(f, "cpu (ndarray, {} threads)", cpu_threads()),
            Resolved::Wgpu { description, .. } => write!(f, "wgpu ({description})"),
            #[cfg(feature = "cuda")]
            Resolved::Cuda { index } => write!(f, "cuda (device {index})"),
        }
    }
}

/// The CPU backend's threads: rayon's global pool (`RAYON_NUM_THREADS`).
fn cpu_threads() -> usize {
    rayon::current_num_threads()
}

/// Work generic over the backend: the binary builds one and [`run`] calls it
/// with the chosen backend (wrapped in [`Autodiff`]; inference code uses
/// `B::InnerBackend`, which shares the device type).
pub trait BackendTask {
    /// What the task returns.
    type Output;
    /// Runs the task on `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Resolves `kind` to a device on this machine (and points CubeCL's
/// caches at gcse's, see [`kernel_caches`]).
pub fn resolve(kind: BackendKind) -> Result<Resolved> {
    kernel_caches();
    match kind {
        BackendKind::Cpu => Ok(Resolved::Cpu),
        BackendKind::Wgpu => best_wgpu_adapter(true).ok_or_else(|| {
            Error::Backend(
                "no WGPU adapter found: install a Vulkan driver (on Debian/Ubuntu: mesa-vulkan-drivers \
                 for a software one) or use --backend cpu"
                    .into(),
            )
        }),
        BackendKind::Cuda => cuda(),
        BackendKind::Auto => {
            if let Ok(cuda) = cuda() {
                return Ok(cuda);
            }
            Ok(best_wgpu_adapter(false).unwrap_or(Resolved::Cpu))
        }
    }
}

/// CubeCL's on-disk caches, the autotuner's choices and (on CUDA) the
/// compiled kernels, in `$GCSE_CACHE/cubecl` (default
/// `~/.cache/gcse/cubecl`) wherever gcse runs, so that a second run starts
/// without compiling or tuning again: CubeCL's own default keeps the
/// autotune choices in the `target` folder of the Cargo project around the
/// working directory and compiled kernels nowhere. A `cubecl.toml` (or
/// `burn.toml`'s `[cubecl]`) in the working directory or above still
/// decides any cache it sets; the first call before any device is used
/// takes effect.
pub fn kernel_caches() {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        let root = crate::model::hub::cache_root().join("cubecl");
        if matches!(config.autotune.cache, CacheConfig::Target) {
            config.autotune.cache = CacheConfig::File(root.clone());
        }
        config
            .compilation
            .cache
            .get_or_insert(CacheConfig::File(root));
        let mut slot = CubeClRuntimeConfig::storage().lock();
        if slot.is_none() {
            *slot = Some(std::sync::Arc::new(config));
        }
    });
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Resolved> {
    match cuda_device_count() {
        Some(n) if n > 0 => Ok(Resolved::Cuda { index: 0 }),
        _ => Err(Error::Backend(
            "no CUDA device found (is the NVIDIA driver installed?)".into(),
        )),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Resolved> {
    Err(Error::Backend(
        "this gcse was built without CUDA: rebuild with `cargo build --release --features cuda`"
            .into(),
    ))
}

/// Number of CUDA devices, or None when the driver library cannot be loaded
/// (cudarc panics then; the panic is caught and silenced).
#[cfg(feature = "cuda")]
fn cuda_device_count() -> Option<i32> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let count = std::panic::catch_unwind(cudarc::driver::CudaContext::device_count);
    std::panic::set_hook(hook);
    count.ok()?.ok()
}

/// The best WGPU adapter: discrete, then integrated, then virtual GPU, then
/// (when `allow_software`) a CPU adapter such as lavapipe.
fn best_wgpu_adapter(allow_software: bool) -> Option<Resolved> {
    let backend = AutoGraphicsApi::backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = futures_lite::future::block_on(instance.enumerate_adapters(backend.into()));
    let mut order = vec![
        wgpu::DeviceType::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu,
    ];
    if allow_software {
        order.push(wgpu::DeviceType::Cpu);
    }
    for kind in order {
        // Burn numbers adapters within one device type, in enumeration order.
        if let Some(adapter) = adapters.iter().find(|a| a.get_info().device_type == kind) {
            let device = match kind {
                wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(0),
                wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(0),
                wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(0),
                _ => WgpuDevice::Cpu,
            };
            let info = adapter.get_info();
            let description = format!("{}, {:?}, {:?}", info.name, info.backend, info.device_type);
            return Some(Resolved::Wgpu {
                device,
                description,
                shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
            });
        }
    }
    None
}

impl Resolved {
    /// Whether this device computes in the half type `dtype`.
    fn computes_in(&self, dtype: FloatDType) -> bool {
        match self {
            Resolved::Cpu => false,
            Resolved::Wgpu { shader_f16, .. } => dtype == FloatDType::F16 && *shader_f16,
            #[cfg(feature = "cuda")]
            Resolved::Cuda { .. } => true,
        }
    }

    /// Bytes of device memory that Burn's allocator holds now on a GPU
    /// backend (its pools keep what a step needed, so after a step this is
    /// that step's footprint); `None` on the CPU, where the process's
    /// resident memory says the same.
    pub fn device_memory_reserved(&self) -> Option<u64> {
        use burn::cubecl::Runtime;
        let usage = match self {
            Resolved::Cpu => return None,
            Resolved::Wgpu { device, .. } => {
                burn::cubecl::wgpu::WgpuRuntime::client(device).memory_usage()
            }
            #[cfg(feature = "cuda")]
            Resolved::Cuda { index } => {
                burn::cubecl::cuda::CudaRuntime::client(&CudaDevice::new(*index)).memory_usage()
            }
        };
        usage.ok().map(|u| u.bytes_reserved)
    }
}

/// Runs `task` on the resolved device.
pub fn run<T: BackendTask>(resolved: &Resolved, task: T) -> T::Output {
    match resolved {
        Resolved::Cpu => task.run::<Autodiff<NdArray<f32>>>(NdArrayDevice::Cpu),
        Resolved::Wgpu { device, .. } => task.run::<Autodiff<Wgpu>>(device.clone()),
        #[cfg(feature = "cuda")]
        Resolved::Cuda { index } => task.run::<Autodiff<Cuda>>(CudaDevice::new(*index)),
    }
}

/// Runs `task` on the resolved device with floats of `precision`, or says
/// why this device cannot (the CPU backend computes in f32 only). A mixed
/// precision runs on the f32 backend: the task sets the products' type
/// ([`Precision::products`]).
pub fn run_at<T: BackendTask>(
    resolved: &Resolved,
    precision: Precision,
    task: T,
) -> Result<T::Output> {
    if let Some(half) = precision.half() {
        if !resolved.computes_in(half) {
            return Err(Error::Usage(format!(
                "{precision} is not available on {resolved}: f32 runs everywhere, f16 and \
                 f16-mixed on CUDA and on WGPU adapters with 16-bit shader floats, bf16 and \
                 bf16-mixed on CUDA"
            )));
        }
    }
    match (resolved, precision) {
        (Resolved::Wgpu { device, .. }, Precision::F16) => {
            Ok(task.run::<Autodiff<Wgpu<f16>>>(device.clone()))
        }
        #[cfg(feature = "cuda")]
        (Resolved::Cuda { index }, Precision::F16) => {
            Ok(task.run::<Autodiff<Cuda<f16>>>(CudaDevice::new(*index)))
        }
        #[cfg(feature = "cuda")]
        (Resolved::Cuda { index }, Precision::Bf16) => {
            Ok(task.run::<Autodiff<Cuda<bf16>>>(CudaDevice::new(*index)))
        }
        _ => Ok(run(resolved, task)),
    }
}
