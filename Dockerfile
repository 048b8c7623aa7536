# syntax=docker/dockerfile:1
# s2sr-cloud container images.
#
#   docker build -t s2sr-cloud:gpu .                 # default target: CUDA + TensorRT + ONNX Runtime GPU
#   docker build -t s2sr-cloud:cpu --target cpu .    # CPU only (ONNX Runtime CPU provider, OpenVINO)
#
#   docker run --gpus all -v s2sr-cache:/cache s2sr-cloud:gpu \
#       search --bbox 11.50,48.10,11.60,48.20 --max-cloud 20 --run --out /work/out \
#       --publish s3://bucket/s2sr --build-engine
#   docker run -v "$PWD:/work" s2sr-cloud:cpu task payload.json --out result.json   # a stac-task step
#
# --out is a local folder (the COGs are written there, then published): object stores are
# --publish targets (s3://, gs://, az:// or a STAC API), never --out.
#
# The entrypoint is `s2sr`; every tuning cache (TensorRT engines, precision gates, int8 models,
# the fp32 probe) lands in the /cache volume ($S2SR_CACHE_DIR) and is reused by later containers
# on the same machine type: fill it ahead of a fleet with `s2sr tune` (see docs/cloud.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---- wheel: build the package once (pure Python, no compiler) ----------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY s2sr_cloud ./s2sr_cloud
COPY export ./export
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- cpu: ONNX Runtime CPU provider ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=wheel /wheels /wheels
RUN pip install "$(echo /wheels/s2sr_cloud-*.whl)[s3,stores,pc,dask,cpu,openvino,cube,task]" \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 --user-group s2sr \
    && mkdir -p /cache /work \
    && chown s2sr:s2sr /cache /work
# GDAL settings for cloud reads (the defaults of s2sr_cloud.io.env.HttpParams).
ENV GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR \
    CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.tif,.tiff,.TIF,.TIFF,.jp2,.JP2 \
    GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES \
    GDAL_HTTP_MULTIPLEX=YES \
    GDAL_HTTP_VERSION=2 \
    VSI_CACHE=TRUE \
    VSI_CACHE_SIZE=67108864 \
    GDAL_CACHEMAX=536870912 \
    CPL_VSIL_CURL_USE_HEAD=NO \
    GDAL_HTTP_RETRY_CODES=429,500,502,503,504 \
    GDAL_HTTP_MAX_RETRY=5 \
    GDAL_HTTP_RETRY_DELAY=1.0 \
    GDAL_HTTP_TIMEOUT=60 \
    GDAL_HTTP_CONNECTTIMEOUT=10 \
    GDAL_HTTP_LOW_SPEED_TIME=30 \
    GDAL_HTTP_LOW_SPEED_LIMIT=1024 \
    S2SR_CACHE_DIR=/cache
VOLUME ["/cache"]
WORKDIR /work
USER 10001:10001
ENTRYPOINT ["s2sr"]
CMD ["--help"]

# ---- gpu-build: virtual environment with TensorRT, cuda-python and ONNX Runtime GPU ----------
FROM ${CUDA_IMAGE} AS gpu-build
ARG ORT_GPU_VERSION=1.31.1
# PyTorch (the nets' window path) and CuPy (the device post-steps' array library), both built
# for the base image's CUDA major (13): the whole default output then runs on the GPU.
ARG TORCH_VERSION=2.9.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG CUPY_VERSION=13.6.0
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The CUDA base image pins the OS release; its Python packages are taken as they come.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=wheel /wheels /wheels
# Only the GPU build of ONNX Runtime (the `gpu` extra; onnxruntime, the `cpu` extra, shares its
# import name and is not installed); the check fails the build if the CPU build crept in.
RUN pip install "$(echo /wheels/s2sr_cloud-*.whl)[gpu,s3,pc,dask]" "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && if pip show -q onnxruntime 2>/dev/null; then echo "onnxruntime (CPU) must not be installed beside onnxruntime-gpu" >&2; exit 1; fi \
    && python -c "import tensorrt, onnxruntime; from cuda.bindings import runtime; print('tensorrt', tensorrt.__version__, onnxruntime.get_available_providers())"
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install "cupy-cuda13x==${CUPY_VERSION}" \
    && python -c "import torch, cupy; assert torch.version.cuda and torch.version.cuda.startswith('13'), torch.version.cuda; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cupy', cupy.__version__)"

# ---- gpu (default): CUDA runtime + the environment above --------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group s2sr \
    && mkdir -p /cache /work \
    && chown s2sr:s2sr /cache /work
COPY --from=gpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# TensorRT's libraries live in the tensorrt_libs wheel; make them visible to ONNX Runtime's
# TensorRT provider too (it dlopens libnvinfer without importing tensorrt first).
RUN python -c "import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))" > /etc/ld.so.conf.d/tensorrt.conf \
    && ldconfig
# GDAL settings for cloud reads (the defaults of s2sr_cloud.io.env.HttpParams).
ENV GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR \
    CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.tif,.tiff,.TIF,.TIFF,.jp2,.JP2 \
    GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES \
    GDAL_HTTP_MULTIPLEX=YES \
    GDAL_HTTP_VERSION=2 \
    VSI_CACHE=TRUE \
    VSI_CACHE_SIZE=67108864 \
    GDAL_CACHEMAX=536870912 \
    CPL_VSIL_CURL_USE_HEAD=NO \
    GDAL_HTTP_RETRY_CODES=429,500,502,503,504 \
    GDAL_HTTP_MAX_RETRY=5 \
    GDAL_HTTP_RETRY_DELAY=1.0 \
    GDAL_HTTP_TIMEOUT=60 \
    GDAL_HTTP_CONNECTTIMEOUT=10 \
    GDAL_HTTP_LOW_SPEED_TIME=30 \
    GDAL_HTTP_LOW_SPEED_LIMIT=1024 \
    S2SR_CACHE_DIR=/cache \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/cache"]
WORKDIR /work
USER 10001:10001
ENTRYPOINT ["s2sr"]
CMD ["--help"]
