import time; t=time.time()
import tfx, tensorflow_transform, official.nlp, tensorflow_text, apache_beam
from tfx import v1 as tfx1
from tfx.v1.orchestration.experimental import KubeflowV2DagRunner
import tensorflow as tf
from official.nlp.modeling import networks
from official.nlp import tasks
enc = networks.BertEncoderV2(vocab_size=100, hidden_size=32, num_layers=2, num_attention_heads=2, intermediate_size=64)
out = enc(dict(input_word_ids=tf.ones((2,8),tf.int32), input_mask=tf.ones((2,8),tf.int32), input_type_ids=tf.zeros((2,8),tf.int32)))
print(out['sequence_output'].shape, tf.__version__, tfx.__version__, time.time()-t)
