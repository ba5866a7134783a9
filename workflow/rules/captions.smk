# Stage rules for captions (to be written).
