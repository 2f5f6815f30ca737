# A stand-in for a CUDA runtime base where NVIDIA's image cannot be pulled: the CPU base plus
# the variables the NVIDIA container runtime reads to mount the driver into the container.
# The CUDA user-space libraries themselves come from the lock (torch's nvidia-* wheels), which
# is why both variants can train on a GPU.
ARG PYTHON_IMAGE=spira-local/python:3.11-bookworm
FROM ${PYTHON_IMAGE}
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.spira.base="cuda-standin"
