
?
inputPlaceholder*
dtype0*
shape:ÿÿÿÿÿÿÿÿÿ

ExpExpinput*
T0
"
IdentityIdentityExp*
T0"ª