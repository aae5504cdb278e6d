
G
inputPlaceholder*
dtype0*$
shape:ÿÿÿÿÿÿÿÿÿ
v
	AvgPool2DAvgPoolinput*
T0*
data_formatNHWC*
ksize
*
paddingSAME*
strides

(
IdentityIdentity	AvgPool2D*
T0"ª