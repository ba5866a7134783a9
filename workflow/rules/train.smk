# Stage rules for train (to be written).
