# Stage rules for landmarks (to be written).
