# Stage rules for parsing (to be written).
