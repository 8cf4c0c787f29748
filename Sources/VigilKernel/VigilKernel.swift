// VigilKernel: see the package manifest for what this target is.
